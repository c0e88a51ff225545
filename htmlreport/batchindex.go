package htmlreport

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"io"

	"wiremortem/batch"
)

//go:embed batchindex.html
var batchIndexHTML string

//go:embed batchindex.css
var batchIndexCSS string

var batchIndexTemplate = template.Must(template.New("batchindex").Parse(batchIndexHTML))

// BatchIndex is what the batch index page shows.
type BatchIndex struct {
	Entries                                             []batch.Entry
	Analysed, Unchanged, Partial, Failed, WithIncidents int
}

// NewBatchIndex counts entries by status.
func NewBatchIndex(entries []batch.Entry) BatchIndex {
	idx := BatchIndex{Entries: entries}
	for _, e := range entries {
		switch e.Status {
		case "analysed":
			idx.Analysed++
		case "unchanged":
			idx.Unchanged++
		case "partial":
			idx.Partial++
		case "failed":
			idx.Failed++
		}
		if e.WorstSeverity != "" {
			idx.WithIncidents++
		}
	}
	return idx
}

// WriteBatchIndex writes the batch sweep's index page: one self-contained
// HTML file with a line per group, linking to each group's report. Every
// string comes from file names and analyses of hostile input and is escaped
// by html/template; the page loads nothing.
func WriteBatchIndex(w io.Writer, idx BatchIndex) error {
	sum := sha256.Sum256([]byte(batchIndexCSS))
	return batchIndexTemplate.Execute(w, struct {
		BatchIndex
		Style     template.CSS
		StyleHash string
	}{idx, template.CSS(batchIndexCSS), base64.StdEncoding.EncodeToString(sum[:])})
}
