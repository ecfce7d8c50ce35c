package config

// Encryption holds the end-to-end encryption settings.
type Encryption struct {
	// EncryptPrivateRooms makes rooms created with the private_chat and
	// trusted_private_chat presets encrypted from the start (an
	// m.room.encryption event with m.megolm.v1.aes-sha2 in their initial
	// state), as if the creator had asked for it.
	EncryptPrivateRooms bool `yaml:"encrypt_private_rooms"`
}
