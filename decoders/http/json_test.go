package http

import (
	"testing"

	"wiremortem/internal/jsonappend/jsonappendtest"
)

// TestAppendJSONEveryField holds AppendJSON to the encoder's bytes on
// records with every field set or not, at random (jsonappendtest.Check).
func TestAppendJSONEveryField(t *testing.T) {
	jsonappendtest.Check(t, 3, (*Conversation).AppendJSON)
}
