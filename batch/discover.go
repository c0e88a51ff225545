// Package batch sweeps archives of captures: it finds captures and the logs
// beside them, groups the parts of rotated captures, analyses each group
// into its own report, and writes an index of them all. Re-runs skip groups
// whose inputs and tool version are unchanged; shards let several workers
// share one sweep.
package batch

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"wiremortem/analysis"
)

// Group is one capture (possibly rotated into several files) and the logs
// that go with it.
type Group struct {
	// Name identifies the group in the output directory: the capture's path
	// relative to the sweep root, without rotation numbers and extensions,
	// with separators replaced.
	Name     string   `json:"name"`
	Dir      string   `json:"dir"`
	Captures []string `json:"captures"`
	Logs     []string `json:"logs"`
}

// ManifestName is the file that, when present in a directory, says
// explicitly which captures and logs form which groups there.
const ManifestName = "wiremortem-manifest.json"

// manifest is the optional per-directory file:
//
//	{"groups": [{"name": "web1", "captures": ["web1.pcap", "web1.pcap1"], "logs": ["error.log"]}]}
//
// Paths are relative to the directory.
type manifest struct {
	Groups []struct {
		Name     string   `json:"name"`
		Captures []string `json:"captures"`
		Logs     []string `json:"logs"`
	} `json:"groups"`
}

// Discover walks roots (directories, files or glob patterns) and returns the
// groups, sorted by name, plus files that could not be classified or paired.
//
// Grouping convention, when a directory has no manifest:
//   - captures are recognised by content; the parts of one rotated capture
//     share a name once rotation numbers are removed (tcpdump -C writes
//     "dump.pcap", "dump.pcap1", "dump.pcap2"; -W and -G write numbered or
//     dated names such as "dump-0001.pcap" or "dump-20261122-1000.pcap");
//   - logs (nginx, strace, ss; an nginx.conf) pair with the directory's only capture
//     group, or, when there are several, with the group whose name their
//     own name starts with ("web1.pcap" and "web1-error.log").
func Discover(roots []string) (groups []Group, unpaired []string, err error) {
	byDir := map[string][]string{}
	for _, root := range roots {
		files, err := expand(root)
		if err != nil {
			return nil, nil, err
		}
		for _, f := range files {
			byDir[filepath.Dir(f)] = append(byDir[filepath.Dir(f)], f)
		}
	}
	var dirs []string
	for d := range byDir {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	base := commonDir(dirs)
	for _, dir := range dirs {
		files := byDir[dir]
		sort.Strings(files)
		g, u, err := groupDir(base, dir, files)
		if err != nil {
			return nil, nil, err
		}
		groups = append(groups, g...)
		unpaired = append(unpaired, u...)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Name < groups[j].Name })
	for i := 1; i < len(groups); i++ {
		if groups[i].Name == groups[i-1].Name {
			return nil, nil, fmt.Errorf("two groups are both named %q (%s and %s): rename one or use a %s", groups[i].Name, groups[i-1].Dir, groups[i].Dir, ManifestName)
		}
	}
	return groups, unpaired, nil
}

func expand(root string) ([]string, error) {
	if strings.ContainsAny(root, "*?[") {
		if _, err := os.Stat(root); err != nil {
			m, err := filepath.Glob(root)
			if err != nil {
				return nil, fmt.Errorf("bad pattern %q: %v", root, err)
			}
			var out []string
			for _, p := range m {
				f, err := expand(p)
				if err != nil {
					return nil, err
				}
				out = append(out, f...)
			}
			return out, nil
		}
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{root}, nil
	}
	var out []string
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

func commonDir(dirs []string) string {
	if len(dirs) == 0 {
		return "."
	}
	base := dirs[0]
	for _, d := range dirs[1:] {
		for !strings.HasPrefix(d+string(filepath.Separator), base+string(filepath.Separator)) && base != "." && base != "/" {
			base = filepath.Dir(base)
		}
	}
	return base
}

// Rotation adds numbers after the extension (tcpdump -C and -W:
// "dump.pcap1", "dump.pcap01") or numbers and dates before it, after a
// separator (-G patterns such as "dump-20261122-1000.pcap").
var (
	afterExtension  = regexp.MustCompile(`^(.*\.(pcap|pcapng|cap|dmp|trace))[0-9]+$`)
	beforeExtension = regexp.MustCompile(`([-_.][0-9]+)+$`)
)

// stem is a capture's name without compression and capture extensions and
// without rotation numbers: the key that groups rotated parts.
func stem(name string) string {
	for _, ext := range []string{".gz", ".zst", ".zstd"} {
		name = strings.TrimSuffix(name, ext)
	}
	name = afterExtension.ReplaceAllString(name, "$1")
	for _, ext := range []string{".pcapng", ".pcap", ".cap", ".dmp", ".trace"} {
		name = strings.TrimSuffix(name, ext)
	}
	if s := beforeExtension.ReplaceAllString(name, ""); s != "" {
		name = s
	}
	return name
}

func groupDir(base, dir string, files []string) ([]Group, []string, error) {
	if m, err := readManifest(dir); err != nil {
		return nil, nil, err
	} else if m != nil {
		var groups []Group
		for _, g := range m.Groups {
			grp := Group{Name: groupName(base, dir, g.Name), Dir: dir}
			for _, c := range g.Captures {
				grp.Captures = append(grp.Captures, filepath.Join(dir, c))
			}
			for _, l := range g.Logs {
				grp.Logs = append(grp.Logs, filepath.Join(dir, l))
			}
			groups = append(groups, grp)
		}
		return groups, nil, nil
	}
	byStem := map[string]*Group{}
	var stems []string
	var logs, unpaired []string
	for _, f := range files {
		if filepath.Base(f) == ManifestName {
			continue
		}
		kind, err := analysis.Detect(f)
		switch {
		case err == nil && kind == analysis.KindCapture:
			s := stem(filepath.Base(f))
			g := byStem[s]
			if g == nil {
				g = &Group{Name: groupName(base, dir, s), Dir: dir}
				byStem[s] = g
				stems = append(stems, s)
			}
			g.Captures = append(g.Captures, f)
		case err == nil:
			logs = append(logs, f)
		default:
			// Not a capture, and not a log kind we know: the analysis of
			// the group would refuse it too, so it is listed, not guessed.
			unpaired = append(unpaired, f)
		}
	}
	sort.Strings(stems)
	for _, l := range logs {
		if len(stems) == 1 {
			byStem[stems[0]].Logs = append(byStem[stems[0]].Logs, l)
			continue
		}
		paired := false
		for _, s := range stems {
			if strings.HasPrefix(filepath.Base(l), s) {
				byStem[s].Logs = append(byStem[s].Logs, l)
				paired = true
				break
			}
		}
		if !paired {
			unpaired = append(unpaired, l)
		}
	}
	var groups []Group
	for _, s := range stems {
		groups = append(groups, *byStem[s])
	}
	return groups, unpaired, nil
}

func readManifest(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(dir, ManifestName), err)
	}
	return &m, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// groupName makes a file-system-safe, unique name from the directory
// relative to the sweep root and the stem.
func groupName(base, dir, s string) string {
	rel, err := filepath.Rel(base, dir)
	if err != nil || rel == "." {
		rel = ""
	}
	name := s
	if rel != "" {
		name = rel + "/" + s
	}
	name = strings.ReplaceAll(name, "/", "__")
	name = unsafeName.ReplaceAllString(name, "_")
	return strings.Trim(name, "._")
}

// InShard reports whether a group belongs to shard k of n (1-based): a
// stable hash of the name, so adding groups does not move the others.
func InShard(name string, k, n int) bool {
	if n <= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32()%uint32(n)) == k-1
}
