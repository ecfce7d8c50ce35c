package config

import "github.com/parley-chat/parley/matrix/id"

// UserDirectory configures POST /user_directory/search.
type UserDirectory struct {
	// SearchAllLocalUsers lets searches find every user of this server.
	// Off, a search finds only the users who share a room with the
	// searcher and the members of public (or world-readable) rooms.
	SearchAllLocalUsers bool `yaml:"search_all_local_users"`
}

// ServerNotices configures notices from the server to its users, sent
// with the admin API POST /_parley/admin/v1/send_server_notice.
type ServerNotices struct {
	// Enabled turns server notices on.
	Enabled bool `yaml:"enabled"`
	// SenderLocalpart is the localpart of the user notices come from. The
	// account is created with the first notice and cannot log in.
	SenderLocalpart string `yaml:"sender_localpart"`
	// RoomName is the name of each user's server notices room.
	RoomName string `yaml:"room_name"`
}

func defaultServerNotices() ServerNotices {
	return ServerNotices{SenderLocalpart: "notices", RoomName: "Server Notices"}
}

func (n ServerNotices) validate(serverName string) error {
	if !n.Enabled {
		return nil
	}
	if _, err := id.ParseUserID("@" + n.SenderLocalpart + ":" + serverName); err != nil || n.SenderLocalpart == "" {
		return keyError("server_notices.sender_localpart", "must be a valid user localpart, got %q", n.SenderLocalpart)
	}
	if n.RoomName == "" {
		return keyError("server_notices.room_name", "must not be empty")
	}
	return nil
}
