package evidence

import (
	"encoding/json"
	"fmt"

	"github.com/go-json-experiment/json/jsontext"
)

// Side is one end of a conversation: the tracker's and the decoders'
// records all name it the same way ("client" or "server").
type Side uint8

const (
	Client Side = 0
	Server Side = 1
)

// Other returns the opposite side.
func (s Side) Other() Side { return 1 - s }

func (s Side) String() string {
	if s == Client {
		return "client"
	}
	return "server"
}

// MarshalJSON writes "client" or "server".
func (s Side) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalJSONTo writes the same through go-json-experiment's encoder (the
// document's conversations), without a byte slice per value.
func (s Side) MarshalJSONTo(enc *jsontext.Encoder) error {
	return enc.WriteToken(jsontext.String(s.String()))
}

// UnmarshalJSON reads "client" or "server", so documents can be read back
// (batch indexes, merges).
func (s *Side) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return err
	}
	switch name {
	case "client":
		*s = Client
	case "server":
		*s = Server
	default:
		return fmt.Errorf("unknown side %q (want client or server)", name)
	}
	return nil
}
