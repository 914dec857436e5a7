package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"go.yaml.in/yaml/v2"
)

const alertsPath = "../../deploy/prometheus/lockstitch-alerts.yml"

// TestAlertRules checks deploy/prometheus/lockstitch-alerts.yml as
// Prometheus loads it: groups of rules, each with a unique alert name, an
// expression, a valid for, a severity of warning or critical and a
// summary and description that parse as templates; and that every metric
// the expressions name is one a running node registers (so a renamed
// metric fails here).
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Record      string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	// Prometheus's template functions that the annotations use.
	funcs := template.FuncMap{"humanizePercentage": fmtAny, "humanizeDuration": fmtAny, "humanize": fmtAny}
	names := map[string]bool{}
	var exprs []string
	for _, g := range file.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: a group needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || r.Record != "" {
				t.Errorf("group %s: rule %+v is not an alert", g.Name, r)
				continue
			}
			if names[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			names[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("alert %s has no expr", r.Alert)
			}
			exprs = append(exprs, r.Expr)
			if r.For != "" && !regexp.MustCompile(`^(\d+[smhdwy])+$`).MatchString(r.For) {
				t.Errorf("alert %s: for %q is not a Prometheus duration", r.Alert, r.For)
			}
			if d, err := time.ParseDuration(r.For); r.For != "" && err == nil && d < time.Minute && !strings.Contains(r.Expr, "increase(") {
				t.Errorf("alert %s: for %s fires on a blip", r.Alert, r.For)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				text := r.Annotations[a]
				if text == "" {
					t.Errorf("alert %s has no %s", r.Alert, a)
				}
				// Prometheus defines $labels and $value before the text.
				if _, err := template.New(a).Funcs(funcs).Parse(`{{$labels := .Labels}}{{$value := .Value}}` + text); err != nil {
					t.Errorf("alert %s: %s: %v", r.Alert, a, err)
				}
			}
		}
	}
	for _, want := range []string{"LockstitchPartitionNoLeader", "LockstitchReplicaQuarantined", "LockstitchReplicaLagGrowing", "LockstitchPendingBytesNearBound", "LockstitchDiskNearlyFull"} {
		if !names[want] {
			t.Errorf("no alert %s", want)
		}
	}
	checkMetricNames(t, alertsPath, exprs)
}

func fmtAny(v any) string { return "" }
