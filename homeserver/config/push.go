package config

import "time"

// Push configures push notifications: delivery to push gateways and how
// long notifications are kept.
type Push struct {
	// AllowPrivateAddresses lets pushers deliver to push gateways at
	// loopback, private, link-local and other non-public addresses. Off,
	// such addresses are refused when connecting (after DNS resolution),
	// so that users cannot make the server post to its own network by
	// registering a pusher.
	AllowPrivateAddresses bool `yaml:"allow_private_addresses"`
	// NotificationRetention is how long the events a user was notified
	// about stay listed by GET /notifications.
	NotificationRetention time.Duration `yaml:"notification_retention"`
}

func defaultPush() Push {
	return Push{NotificationRetention: 30 * 24 * time.Hour}
}

func (p *Push) validate() error {
	if p.NotificationRetention < time.Hour {
		return keyError("push.notification_retention", "must be at least 1h")
	}
	return nil
}
