package homeserver

import (
	"context"

	"github.com/parley-chat/parley/homeserver/appservice"
)

// buildAppServices loads the application services' registration files
// (app_service_config_files), creates their sender users, and connects
// them to the room engine: its listener wakes their event pushers, and its
// namespace hooks ask them about unknown users and aliases and keep their
// exclusive aliases theirs. New calls it after buildRooms; an invalid
// registration file stops start-up with a line naming the file and the
// field. Typing, receipts and presence reach the services through
// AppServices.PushEphemeral.
func (s *Server) buildAppServices(ctx context.Context) error {
	regs, err := appservice.LoadRegistrations(s.cfg.AppServiceConfigFiles, s.cfg.ServerName)
	if err != nil {
		return err
	}
	s.AppServices, err = appservice.New(ctx, appservice.Config{
		ServerName:    s.cfg.ServerName,
		DB:            s.DB,
		Users:         s.Users,
		Rooms:         s.Rooms,
		Registrations: regs,
		Log:           s.log.WithField("component", "appservice"),
	})
	if err != nil {
		return err
	}
	if len(regs) > 0 {
		s.Rooms.AddListener(s.AppServices.OnEvent)
		s.Rooms.SetNamespaceHooks(s.AppServices.RoomHooks())
		for _, r := range regs {
			s.log.WithField("appservice", r.ID).WithField("url", r.URL).Info("application service registered")
		}
	}
	return nil
}
