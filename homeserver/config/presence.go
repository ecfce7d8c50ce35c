package config

// Presence configures user presence (online, unavailable, offline).
type Presence struct {
	// Enabled tracks, stores and shares presence. Off, every user appears
	// offline, presence updates are accepted and ignored, and no presence
	// is stored or exchanged with other servers: on large servers presence
	// is one of the most expensive features.
	Enabled bool `yaml:"enabled"`
}
