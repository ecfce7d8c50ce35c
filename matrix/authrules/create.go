package authrules

import (
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/matrix/event"
)

// createContent is what the auth rules read from a room's m.room.create event.
type createContent struct {
	event   *event.Event
	version event.RoomVersionInfo
	// creator is "the creator" of the first-join rule and of the level 100
	// that a room without power levels gives: content.creator before room
	// version 11, the create event's sender from v11 on.
	creator string
	// creators have infinite power when privileged (v12): the sender, then
	// additional_creators.
	creators   []string
	privileged bool
	// federate is false only when content["m.federate"] is JSON false.
	federate bool
}

// objectKeys decodes the top level of a JSON object. Map decoding matches
// keys exactly, where decoding into a struct would also accept other cases
// ("Creator" for "creator"), which the spec does not.
func objectKeys(raw []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("not an object")
	}
	return m, nil
}

func parseCreate(create *event.Event) (*createContent, error) {
	v := create.Version()
	content := create.Content()
	if !isObject(content) {
		return nil, notAllowed("m.room.create content is not an object")
	}
	cc := &createContent{event: create, version: v, federate: true, privileged: v.PrivilegedCreators}
	if v.CreatorFromSender {
		cc.creator = create.Sender()
	} else {
		cc.creator, _ = memberString(content, "creator")
	}
	if raw, ok := objectMember(content, "m.federate"); ok && string(raw) == "false" {
		cc.federate = false
	}
	if v.PrivilegedCreators {
		cc.creators = []string{create.Sender()}
		if raw, ok := objectMember(content, "additional_creators"); ok {
			forEachElement(raw, func(e []byte) {
				// An accepted create event holds only valid user IDs here;
				// skipping anything else keeps reading an unchecked one safe.
				if s, ok := jsonString(e); ok {
					cc.creators = append(cc.creators, s)
				}
			})
		}
	}
	return cc, nil
}

// createAllowed applies rule 1, the rules of the m.room.create event, which
// is checked against nothing but itself.
func createAllowed(ev *event.Event) error {
	v := ev.Version()
	// 1.1: the create event is the root of the room's DAG.
	if len(ev.PrevEventIDs()) > 0 {
		return notAllowed("m.room.create has prev_events")
	}
	if v.CreateEventIsRoomID {
		// 1.2 (v12): the room ID is derived from this event's ID, so the
		// event must not claim one.
		top, err := objectKeys(ev.JSON())
		if err != nil {
			return notAllowed("m.room.create: %v", err)
		}
		if _, ok := top["room_id"]; ok {
			return notAllowed("m.room.create has a room_id")
		}
	} else if !sameDomain(ev.RoomID(), ev.Sender()) {
		// 1.2 (v1-11)
		return notAllowed("m.room.create room ID %q is not on the sender's server %q", ev.RoomID(), ev.Sender())
	}
	content, err := objectKeys(ev.Content())
	if err != nil {
		return notAllowed("m.room.create content: %v", err)
	}
	// 1.3
	if raw, ok := content["room_version"]; ok {
		s, isString := jsonString(raw)
		if !isString {
			return notAllowed("m.room.create room_version is not a string")
		}
		if _, err := event.RoomVersion(s).Info(); err != nil {
			return notAllowed("m.room.create room_version %q is not a recognised version", s)
		}
	}
	// 1.4 (v1-10): the creator was named in content until v11 made it the sender.
	if !v.CreatorFromSender {
		if _, ok := content["creator"]; !ok {
			return notAllowed("m.room.create content has no creator")
		}
	}
	// 1.4 (v12)
	if v.PrivilegedCreators {
		if raw, ok := content["additional_creators"]; ok {
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil || list == nil {
				return notAllowed("m.room.create additional_creators is not an array")
			}
			for _, r := range list {
				s, isString := jsonString(r)
				if !isString || !validUserID(s) {
					return notAllowed("m.room.create additional_creators holds %s, not a valid user ID", r)
				}
			}
		}
	}
	return nil
}
