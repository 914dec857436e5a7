package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/server"
)

// The Grafana dashboard in deploy/grafana is built here, as code: the
// panels below are the source, and TestDashboard fails when the JSON file
// differs from what they build (go test ./cmd/lockstitch -run
// TestDashboard -update rewrites it). Its queries are then checked like
// the alert rules': every metric they name must be one a node registers.

const dashboardPath = "../../deploy/grafana/lockstitch.json"

// sel is the label matcher every query applies: the dashboard's job and
// instance variables.
const sel = `job=~"$job",instance=~"$instance"`

// psel adds the partition variable to sel.
const psel = sel + `,partition=~"$partition"`

// dashPanel is one panel of the dashboard, before layout.
type dashPanel struct {
	row         string // starts a new row with this title
	kind        string // timeseries (the default) or stat
	title, desc string
	unit        string
	width       int // in Grafana's 24 columns; 12 when 0
	targets     []dashTarget
}

type dashTarget struct{ expr, legend string }

func q(expr, legend string) dashTarget { return dashTarget{expr, legend} }

// dashboardPanels are the dashboard's panels, in order.
var dashboardPanels = []dashPanel{
	{row: "Cluster", kind: "stat", width: 4, title: "Nodes", unit: "none",
		desc:    "Nodes scraped (each exports lockstitch_build_info).",
		targets: []dashTarget{q(`count(lockstitch_build_info{`+sel+`})`, "")}},
	{kind: "stat", width: 4, title: "Peers unreachable", unit: "none",
		desc:    "Peer pings that failed, counted over every node's view of its peers (lockstitch_peer_up == 0). A node down is seen by each of the others.",
		targets: []dashTarget{q(`count(lockstitch_peer_up{`+sel+`} == 0) or vector(0)`, "")}},
	{kind: "stat", width: 4, title: "Partitions", unit: "none",
		desc:    "Partitions with a replica on any node scraped.",
		targets: []dashTarget{q(`count(count by (partition) (lockstitch_partition_leader{`+sel+`}))`, "")}},
	{kind: "stat", width: 4, title: "Partitions without a leader", unit: "none",
		desc:    "Partitions no replica leads: they take no appends. A quorum of their replicas is down or cut off, or an election is under way.",
		targets: []dashTarget{q(`count(sum by (partition) (lockstitch_partition_leader{`+sel+`}) == 0) or vector(0)`, "")}},
	{kind: "stat", width: 4, title: "Quarantined replicas", unit: "none",
		desc:    "Replicas held but not run because their state failed to open at start (lockstitch partition repair, or --auto-repair, rebuilds them).",
		targets: []dashTarget{q(`sum(lockstitch_replicas_quarantined{`+sel+`})`, "")}},
	{kind: "stat", width: 4, title: "Quiesced replicas", unit: "none",
		desc:    "Idle replicas exchanging no heartbeats (--quiesce).",
		targets: []dashTarget{q(`sum(lockstitch_replicas_quiesced{`+sel+`})`, "")}},

	{row: "Appends", title: "Append rate by result", unit: "ops",
		desc: "Appends finished per second, by result, summed over the nodes. ok and duplicate are successes; not_leader is normal for a moment after a leader change.",
		targets: []dashTarget{
			q(`sum by (result) (rate(lockstitch_appends_total{`+sel+`}[$__rate_interval]))`, "{{result}}"),
		}},
	{title: "Append latency", unit: "s",
		desc: "Time from an append being queued to its completion (commit on a quorum, apply on the leader), per node; successful appends only.",
		targets: []dashTarget{
			q(`histogram_quantile(0.5, sum by (instance, le) (rate(lockstitch_append_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p50 {{instance}}"),
			q(`histogram_quantile(0.99, sum by (instance, le) (rate(lockstitch_append_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "p99 {{instance}}"),
		}},
	{title: "Ops per Raft entry", unit: "none",
		desc: "Mean number of appends coalesced into each Raft entry the leaders proposed.",
		targets: []dashTarget{
			q(`sum by (instance) (rate(lockstitch_append_batch_ops_sum{`+sel+`}[$__rate_interval])) / sum by (instance) (rate(lockstitch_append_batch_ops_count{`+sel+`}[$__rate_interval]))`, "{{instance}}"),
		}},
	{title: "Pending append bytes", unit: "bytes",
		desc: "Payload bytes of appends queued or in flight on each node, and its bound (--max-node-pending-bytes): beyond it, appends answer busy.",
		targets: []dashTarget{
			q(`lockstitch_node_pending_bytes{`+sel+`}`, "pending {{instance}}"),
			q(`lockstitch_node_pending_max_bytes{`+sel+`}`, "bound {{instance}}"),
		}},
	{title: "Pending appends by partition", unit: "none",
		desc: "Appends queued or in flight on each partition's leader (bounded by --max-pending-ops).",
		targets: []dashTarget{
			q(`max by (partition) (lockstitch_partition_pending_appends{`+psel+`})`, "partition {{partition}}"),
		}},
	{title: "Commit rate by partition", unit: "ops",
		desc: "Ops committed per second on each partition (the rate of its committed LSN).",
		targets: []dashTarget{
			q(`max by (partition) (rate(lockstitch_partition_committed_lsn{`+psel+`}[$__rate_interval]))`, "partition {{partition}}"),
		}},

	{row: "Replication", title: "Replica lag", unit: "none",
		desc: "Ops each replica is behind its leader, as of its last progress report (exported by leaders).",
		targets: []dashTarget{
			q(`max by (partition, replica) (lockstitch_replica_lag_ops{`+psel+`})`, "partition {{partition}} replica {{replica}}"),
		}},
	{title: "Apply lag", unit: "none",
		desc: "Ops each node's replica knows to be committed and has not applied yet (committed LSN - applied LSN).",
		targets: []dashTarget{
			q(`lockstitch_partition_committed_lsn{`+psel+`} - lockstitch_partition_applied_lsn{`+psel+`}`, "{{instance}} partition {{partition}}"),
		}},
	{title: "Leaders per node", unit: "none",
		desc: "Partitions each node leads: a step is a leader change.",
		targets: []dashTarget{
			q(`sum by (instance) (lockstitch_partition_leader{`+psel+`})`, "{{instance}}"),
		}},
	{title: "Leader changes", unit: "none",
		desc: "Leadership flips seen per interval: each change turns one replica's lockstitch_partition_leader off and another's on (a leader whose node went away is not scraped, so that change counts half).",
		targets: []dashTarget{
			q(`sum by (partition) (changes(lockstitch_partition_leader{`+psel+`}[$__rate_interval])) / 2 > 0`, "partition {{partition}}"),
		}},
	{title: "Peers reachable", unit: "none",
		desc: "1 while a peer answers this node's pings (--peer-probe-interval).",
		targets: []dashTarget{
			q(`lockstitch_peer_up{`+sel+`}`, "{{instance}} → node {{peer}}"),
		}},
	{title: "Quiet replicas woken", unit: "ops",
		desc: "Quiet replicas woken per second because a node they depend on was seen down.",
		targets: []dashTarget{
			q(`sum by (instance) (rate(lockstitch_quiesce_wakes_total{`+sel+`}[$__rate_interval]))`, "{{instance}}"),
		}},

	{row: "Copies and subscriptions", title: "Copies active", unit: "none",
		desc: "State copies being sent from or restored on each node.",
		targets: []dashTarget{
			q(`lockstitch_copies_active{`+sel+`}`, "{{instance}}"),
		}},
	{title: "Copy throughput", unit: "Bps",
		desc: "Bytes of state copies sent to replicas that fell behind, and received and restored.",
		targets: []dashTarget{
			q(`sum by (instance) (rate(lockstitch_copy_sent_bytes_total{`+sel+`}[$__rate_interval]))`, "sent {{instance}}"),
			q(`sum by (instance) (rate(lockstitch_copy_received_bytes_total{`+sel+`}[$__rate_interval]))`, "received {{instance}}"),
		}},
	{title: "Copies finished", unit: "none",
		desc: "State copies finished per interval, by direction and result.",
		targets: []dashTarget{
			q(`sum by (direction, result) (increase(lockstitch_copies_total{`+sel+`}[$__rate_interval]))`, "{{direction}} {{result}}"),
		}},
	{title: "Subscriptions", unit: "ops",
		desc: "Subscriptions opened per second (Subscribe frames), and those a node ended because its replica lost touch with its leader (their consumers resume elsewhere).",
		targets: []dashTarget{
			q(`sum by (instance) (rate(lockstitch_transport_frames_received_total{`+sel+`,type="Subscribe"}[$__rate_interval]))`, "opened {{instance}}"),
			q(`sum by (instance) (rate(lockstitch_subscriptions_left_total{`+sel+`}[$__rate_interval]))`, "left {{instance}}"),
		}},

	{row: "Errors", title: "Failed appends", unit: "ops",
		desc: "Appends that did not succeed, per second, by result. aborted and unavailable have an unknown outcome; busy is backpressure.",
		targets: []dashTarget{
			q(`sum by (result) (rate(lockstitch_appends_total{`+sel+`,result!~"ok|duplicate"}[$__rate_interval]))`, "{{result}}"),
		}},
	{title: "Error frames by code", unit: "ops",
		desc: "Error frames the nodes sent to clients, per second, by code.",
		targets: []dashTarget{
			q(`sum by (code) (rate(lockstitch_transport_errors_total{`+sel+`}[$__rate_interval]))`, "{{code}}"),
		}},

	{row: "Storage and process", title: "Data disk available", unit: "percentunit",
		desc: "Share of the data directory's filesystem still available to the node. A full disk stops its replicas.",
		targets: []dashTarget{
			q(`lockstitch_data_dir_available_bytes{`+sel+`} / lockstitch_data_dir_size_bytes{`+sel+`}`, "{{instance}}"),
		}},
	{title: "Operation log size", unit: "bytes",
		desc: "Bytes of the operation logs each node retains (--retain-bytes, --retain-age and durable cursors bound them).",
		targets: []dashTarget{
			q(`sum by (instance) (lockstitch_wal_bytes{`+psel+`})`, "{{instance}}"),
		}},
	{title: "Checkpoint latency p99", unit: "s",
		desc: "Time to fsync a partition's log and write its checkpoint: a slow disk shows here first.",
		targets: []dashTarget{
			q(`histogram_quantile(0.99, sum by (instance, le) (rate(lockstitch_checkpoint_duration_seconds_bucket{`+sel+`}[$__rate_interval])))`, "{{instance}}"),
		}},
	{title: "Client traffic", unit: "Bps",
		desc: "Bytes of frames received from and sent to clients (and to peers' administration, which uses the client port).",
		targets: []dashTarget{
			q(`sum by (instance) (rate(lockstitch_transport_received_bytes_total{`+sel+`}[$__rate_interval]))`, "in {{instance}}"),
			q(`sum by (instance) (rate(lockstitch_transport_sent_bytes_total{`+sel+`}[$__rate_interval]))`, "out {{instance}}"),
		}},
	{title: "Client connections", unit: "none",
		targets: []dashTarget{
			q(`lockstitch_transport_connections{`+sel+`}`, "{{instance}}"),
		}},
	{title: "Memory and CPU", unit: "bytes",
		desc: "Resident memory of each node's process (CPU seconds per second on the right axis).",
		targets: []dashTarget{
			q(`process_resident_memory_bytes{`+sel+`}`, "rss {{instance}}"),
			q(`rate(process_cpu_seconds_total{`+sel+`}[$__rate_interval])`, "cpu {{instance}}"),
		}},
}

// Grafana's dashboard JSON, the fields this dashboard uses.
type (
	gDashboard struct {
		UID           string       `json:"uid"`
		Title         string       `json:"title"`
		Description   string       `json:"description"`
		Tags          []string     `json:"tags"`
		Editable      bool         `json:"editable"`
		GraphTooltip  int          `json:"graphTooltip"`
		Refresh       string       `json:"refresh"`
		SchemaVersion int          `json:"schemaVersion"`
		Time          gTime        `json:"time"`
		Timezone      string       `json:"timezone"`
		Templating    gTemplating  `json:"templating"`
		Annotations   gAnnotations `json:"annotations"`
		Panels        []gPanel     `json:"panels"`
	}
	gTime struct {
		From string `json:"from"`
		To   string `json:"to"`
	}
	gTemplating struct {
		List []gVar `json:"list"`
	}
	gAnnotations struct {
		List []any `json:"list"`
	}
	gVar struct {
		Name       string       `json:"name"`
		Label      string       `json:"label"`
		Type       string       `json:"type"`
		Query      any          `json:"query"`
		Definition string       `json:"definition,omitempty"`
		Datasource *gDatasource `json:"datasource,omitempty"`
		Refresh    int          `json:"refresh"`
		Multi      bool         `json:"multi"`
		IncludeAll bool         `json:"includeAll"`
		AllValue   string       `json:"allValue,omitempty"`
		Sort       int          `json:"sort"`
		Current    gCurrent     `json:"current"`
		Options    []any        `json:"options"`
		Hide       int          `json:"hide"`
	}
	gCurrent struct {
		Text  string `json:"text"`
		Value string `json:"value"`
	}
	gQuery struct {
		Query string `json:"query"`
		RefID string `json:"refId"`
	}
	gDatasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	gPanel struct {
		ID          int          `json:"id"`
		Type        string       `json:"type"`
		Title       string       `json:"title"`
		Description string       `json:"description,omitempty"`
		Collapsed   *bool        `json:"collapsed,omitempty"`
		Datasource  *gDatasource `json:"datasource,omitempty"`
		GridPos     gGridPos     `json:"gridPos"`
		FieldConfig *gFieldCfg   `json:"fieldConfig,omitempty"`
		Options     any          `json:"options,omitempty"`
		Targets     []gTarget    `json:"targets,omitempty"`
		Panels      *[]gPanel    `json:"panels,omitempty"` // a row's: none, as it is not collapsed
	}
	gGridPos struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	}
	gFieldCfg struct {
		Defaults  map[string]any `json:"defaults"`
		Overrides []any          `json:"overrides"`
	}
	gTarget struct {
		RefID        string       `json:"refId"`
		Datasource   *gDatasource `json:"datasource"`
		Expr         string       `json:"expr"`
		LegendFormat string       `json:"legendFormat"`
		Range        bool         `json:"range"`
		Instant      bool         `json:"instant"`
	}
)

var promDatasource = &gDatasource{Type: "prometheus", UID: "${datasource}"}

// buildDashboard lays dashboardPanels out, rows of panels left to right.
func buildDashboard() gDashboard {
	d := gDashboard{
		UID: "lockstitch", Title: "Lockstitch",
		Description: "A Lockstitch cluster: appends, replication lag, leaders, copies, errors and storage. Built by cmd/lockstitch/dashboard_test.go; docs/operations.md section 5.",
		Tags:        []string{"lockstitch"}, Editable: true, GraphTooltip: 1, Refresh: "30s", SchemaVersion: 39,
		Time: gTime{From: "now-1h", To: "now"}, Timezone: "browser",
		Annotations: gAnnotations{List: []any{}},
	}
	labelVar := func(name, label, query string) gVar {
		return gVar{Name: name, Label: label, Type: "query", Datasource: promDatasource,
			Query: gQuery{Query: query, RefID: "PrometheusVariableQueryEditor-VariableQuery"}, Definition: query,
			Refresh: 2, Multi: true, IncludeAll: true, AllValue: ".*", Sort: 3, Options: []any{}, Current: gCurrent{Text: "All", Value: "$__all"}}
	}
	d.Templating.List = []gVar{
		{Name: "datasource", Label: "Data source", Type: "datasource", Query: "prometheus", Refresh: 1, Options: []any{}, Current: gCurrent{Text: "default", Value: "default"}},
		labelVar("job", "Job", "label_values(lockstitch_build_info, job)"),
		labelVar("instance", "Node", `label_values(lockstitch_build_info{job=~"$job"}, instance)`),
		labelVar("partition", "Partition", `label_values(lockstitch_partition_leader{job=~"$job"}, partition)`),
	}
	id, x, y, h := 0, 0, 0, 0
	for _, p := range dashboardPanels {
		if p.row != "" {
			if x > 0 {
				x, y = 0, y+h
			}
			id++
			collapsed := false
			d.Panels = append(d.Panels, gPanel{ID: id, Type: "row", Title: p.row, Collapsed: &collapsed, GridPos: gGridPos{H: 1, W: 24, X: 0, Y: y}, Panels: &[]gPanel{}})
			y++
		}
		w, kind := p.width, p.kind
		if w == 0 {
			w = 12
		}
		if kind == "" {
			kind = "timeseries"
		}
		h = 8
		if kind == "stat" {
			h = 4
		}
		if x+w > 24 {
			x, y = 0, y+h
		}
		id++
		gp := gPanel{ID: id, Type: kind, Title: p.title, Description: p.desc, Datasource: promDatasource,
			GridPos: gGridPos{H: h, W: w, X: x, Y: y}}
		defaults := map[string]any{"unit": p.unit}
		if kind == "stat" {
			defaults["thresholds"] = map[string]any{"mode": "absolute", "steps": []any{map[string]any{"color": "green", "value": nil}}}
			gp.Options = map[string]any{"reduceOptions": map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
				"colorMode": "value", "graphMode": "none", "textMode": "auto", "justifyMode": "auto", "orientation": "auto",
				"wideLayout": true, "showPercentChange": false, "percentChangeColorMode": "standard"}
		} else {
			defaults["custom"] = map[string]any{"fillOpacity": 0, "lineWidth": 1, "spanNulls": false}
			gp.Options = map[string]any{"legend": map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true, "calcs": []string{}},
				"tooltip": map[string]any{"mode": "multi", "sort": "desc"}}
		}
		gp.FieldConfig = &gFieldCfg{Defaults: defaults, Overrides: []any{}}
		if p.title == "Memory and CPU" {
			gp.FieldConfig.Overrides = []any{map[string]any{
				"matcher":    map[string]any{"id": "byRegexp", "options": "cpu .*"},
				"properties": []any{map[string]any{"id": "unit", "value": "percentunit"}, map[string]any{"id": "custom.axisPlacement", "value": "right"}},
			}}
		}
		for i, t := range p.targets {
			gp.Targets = append(gp.Targets, gTarget{RefID: string(rune('A' + i)), Datasource: promDatasource, Expr: t.expr, LegendFormat: t.legend,
				Range: kind != "stat", Instant: kind == "stat"})
		}
		d.Panels = append(d.Panels, gp)
		x += w
		if x >= 24 {
			x, y = 0, y+h
		}
	}
	return d
}

// TestDashboard checks deploy/grafana/lockstitch.json: it is what
// dashboardPanels build (-update rewrites it), its panels have unique ids
// and fit Grafana's 24 columns without overlapping, its queries use only
// the variables it defines, and every metric they name is one a running
// node registers (so a renamed metric fails here).
func TestDashboard(t *testing.T) {
	got, err := json.MarshalIndent(buildDashboard(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(dashboardPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, file) {
		t.Errorf("%s differs from what dashboardPanels build: run go test ./cmd/lockstitch -run TestDashboard -update", dashboardPath)
	}

	// From here on, the file as Grafana reads it.
	var d struct {
		UID        string
		Templating struct {
			List []struct{ Name, Type, Definition string }
		}
		Panels []struct {
			ID      int
			Type    string
			Title   string
			GridPos struct{ H, W, X, Y int }
			Targets []struct{ RefID, Expr string }
		}
	}
	if err := json.Unmarshal(file, &d); err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	var exprs []string
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "query" {
			m := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]\w*\)$`).FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
				continue
			}
			exprs = append(exprs, m[1])
		}
	}
	ids := map[int]bool{}
	var cells [24][200]int // panel id covering each (column, row)
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 || g.Y+g.H > len(cells[0]) {
			t.Errorf("panel %q: gridPos %+v outside the grid", p.Title, g)
			continue
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if cells[x][y] != 0 {
					t.Errorf("panel %q overlaps panel %d at (%d, %d)", p.Title, cells[x][y], x, y)
				}
				cells[x][y] = p.ID
			}
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, e := range exprs {
		for _, m := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(e, -1) {
			if !vars[m[1]] {
				t.Errorf("query %q uses $%s, which the dashboard does not define", e, m[1])
			}
		}
	}
	checkMetricNames(t, dashboardPath, exprs)
}

// TestDashboardSchema checks deploy/grafana/lockstitch.json against
// Grafana's dashboard schema, as its foundation SDK has it: decoded
// strictly (no unknown field, no field of the wrong type, every required
// one present, each panel's options by its panel type), then validated.
func TestDashboardSchema(t *testing.T) {
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	plugins.RegisterDefaultPlugins() // the panel types' options
	// The classic dashboard JSON, which Grafana's import takes; the SDK's
	// dashboardv2 is the newer resource format.
	//lint:ignore SA1019 the file is the classic format, on purpose
	var d dashboard.Dashboard
	// UnmarshalJSONStrict returns an empty cog.BuildErrors, not nil, when
	// all is well.
	if err := d.UnmarshalJSONStrict(raw); err != nil {
		if errs, ok := err.(cog.BuildErrors); !ok || len(errs) > 0 {
			t.Fatalf("%s does not follow Grafana's dashboard schema:\n%v", dashboardPath, err)
		}
	}
	if err := d.Validate(); err != nil {
		if errs, ok := err.(cog.BuildErrors); !ok || len(errs) > 0 {
			t.Fatalf("%s: %v", dashboardPath, err)
		}
	}
	if len(d.Panels) != len(buildDashboard().Panels) {
		t.Fatalf("the schema's decoding found %d panels, want %d", len(d.Panels), len(buildDashboard().Panels))
	}
}

// checkMetricNames fails t for each metric that exprs (PromQL) name and a
// node does not register; where names the file they come from.
func checkMetricNames(t *testing.T, where string, exprs []string) {
	t.Helper()
	reg := nodeRegistry(t)
	seen := 0
	for _, e := range exprs {
		names, err := promqlMetrics(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: query %q names no metric", where, e)
		}
		for _, n := range names {
			seen++
			if !registered(reg, n) {
				t.Errorf("%s: query %q uses %s, which a node does not register", where, e, n)
			}
		}
	}
	t.Logf("%s: %d queries naming %d metrics checked", where, len(exprs), seen)
}

// registered reports whether name is a metric family reg holds or, for
// _bucket, _sum and _count, the histogram or summary it belongs to.
//
// Gathering would miss the families that have no series yet (a counter
// vector before its first label set, a node's lag before it leads), so
// the registry is asked instead: registering a probe of the same name
// with another help string fails exactly when the name is taken.
func registered(reg *prometheus.Registry, name string) bool {
	if externalMetrics[name] {
		return true
	}
	for _, n := range []string{name, strings.TrimSuffix(name, "_bucket"), strings.TrimSuffix(name, "_sum"), strings.TrimSuffix(name, "_count")} {
		probe := probeCollector{prometheus.NewDesc(n, "probe of cmd/lockstitch's deploy tests", nil, nil)}
		if err := reg.Register(probe); err != nil {
			return true
		}
		reg.Unregister(probe)
	}
	return false
}

// externalMetrics are the series Prometheus itself adds to every target.
var externalMetrics = map[string]bool{"up": true}

type probeCollector struct{ d *prometheus.Desc }

func (p probeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- p.d }
func (p probeCollector) Collect(chan<- prometheus.Metric)    {}

// nodeRegistry starts a one-node cluster and returns its metrics
// registry, what its /metrics serves; the node stops with the test. It
// checks that /metrics answers with the registry's families.
func nodeRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	n, cfg := startOneNode(t)
	reg := n.Registry()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + cfg.AdminListener.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	for _, mf := range mfs {
		if !bytes.Contains(body, []byte("\n# TYPE "+mf.GetName()+" ")) {
			t.Errorf("/metrics lacks %s, which the node's registry holds", mf.GetName())
		}
	}
	return reg
}

// startOneNode starts a one-node cluster on 127.0.0.1 (client and admin
// listeners on ports the kernel picks, Raft on a port free a moment ago)
// and returns it and its configuration; the node stops with the test.
func startOneNode(t *testing.T) (*server.Node, server.Config) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.RaftAddr = 1, t.TempDir(), testutil.FreeAddr(t)
	cfg.Replicator.RTT = 5 * time.Millisecond
	var err error
	if cfg.ClientListener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if cfg.AdminListener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	n, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, cfg
}

// promqlMetrics returns the metric names a PromQL expression selects: its
// identifiers that are not functions, aggregations, keywords, label names
// (in braces, or the grouping lists of by, without, on, ignoring,
// group_left and group_right), durations or Grafana variables.
func promqlMetrics(expr string) ([]string, error) {
	var names []string
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	skipSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	// skipTo returns the index after the close that matches expr[i],
	// passing over quoted strings.
	skipTo := func(i int, close byte) (int, error) {
		open := expr[i]
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				j := strings.IndexByte(expr[i+1:], c)
				if j < 0 {
					return 0, errUnclosed(expr)
				}
				i += j + 1
			case c == open:
				depth++
			case c == close:
				if depth--; depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errUnclosed(expr)
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := strings.IndexByte(expr[i+1:], c)
			if j < 0 {
				return nil, errUnclosed(expr)
			}
			i += j + 2
		case c == '{':
			var err error
			if i, err = skipTo(i, '}'); err != nil {
				return nil, err
			}
		case c == '[':
			var err error
			if i, err = skipTo(i, ']'); err != nil {
				return nil, err
			}
		case c == '$': // a Grafana variable: $name or ${name}
			i++
			if i < len(expr) && expr[i] == '{' {
				var err error
				if i, err = skipTo(i, '}'); err != nil {
					return nil, err
				}
			}
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.': // a number or a duration
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			j := i
			for j < len(expr) && isIdent(expr[j], false) {
				j++
			}
			word, next := expr[i:j], skipSpace(j)
			i = j
			paren := next < len(expr) && expr[next] == '('
			switch {
			case groupingWords[word] && paren:
				var err error
				if i, err = skipTo(next, ')'); err != nil {
					return nil, err
				}
			case paren, promqlWords[strings.ToLower(word)]:
				// a function or aggregation, or a keyword
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, nil
}

// groupingWords are followed by a list of label names.
var groupingWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promqlWords are PromQL's keywords, literals and aggregations (which
// "sum by (l) (...)" separates from their parenthesis).
var promqlWords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true, "count": true,
	"count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true}

type unclosedError string

func (e unclosedError) Error() string {
	return "unclosed quote or bracket in " + strings.TrimSpace(string(e))
}

func errUnclosed(expr string) error { return unclosedError(expr) }

// TestPromqlMetrics checks the PromQL scanner the dashboard and alert
// tests rely on.
func TestPromqlMetrics(t *testing.T) {
	for _, c := range []struct {
		expr string
		want string
	}{
		{`up`, "up"},
		{`sum by (result) (rate(lockstitch_appends_total{job=~"$job",result!~"ok|dup}licate"}[$__rate_interval]))`, "lockstitch_appends_total"},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket[5m])))`, "a_bucket"},
		{`a - on (partition) group_left (replica) b offset 1h and bool c > 1e+09`, "a b c"},
		{`sum(x) without (job) / ignoring(instance) y or vector(0)`, "x y"},
		{`count(z == 0) or on() Inf`, "z"},
		{`predict_linear(d:avail[6h], 24 * 3600) < 0`, "d:avail"},
		{`min_over_time(deriv(lag[10m])[30m:1m]) > ${threshold}`, "lag"},
	} {
		names, err := promqlMetrics(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
		}
		if got := strings.Join(names, " "); got != c.want {
			t.Errorf("%s: %q, want %q", c.expr, got, c.want)
		}
	}
	if _, err := promqlMetrics(`rate(a{job="x}[5m])`); err == nil {
		t.Error("an unclosed quote was not reported")
	}
}
