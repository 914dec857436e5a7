package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

// The parts of Kubernetes objects that TestKubernetesExamples reads.
type (
	k8sMeta struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	}
	k8sLabelSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	k8sService struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			ClusterIP                string            `yaml:"clusterIP"`
			PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
			Selector                 map[string]string `yaml:"selector"`
		} `yaml:"spec"`
	}
	k8sPDB struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			MaxUnavailable *int             `yaml:"maxUnavailable"`
			MinAvailable   *int             `yaml:"minAvailable"`
			Selector       k8sLabelSelector `yaml:"selector"`
		} `yaml:"spec"`
	}
	k8sStatefulSet struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			ServiceName string `yaml:"serviceName"`
			Replicas    int    `yaml:"replicas"`
			Ordinals    struct {
				Start int `yaml:"start"`
			} `yaml:"ordinals"`
			PodManagementPolicy string           `yaml:"podManagementPolicy"`
			Selector            k8sLabelSelector `yaml:"selector"`
			Template            struct {
				Metadata k8sMeta `yaml:"metadata"`
				Spec     struct {
					Containers []k8sContainer `yaml:"containers"`
					Volumes    []struct {
						Name     string    `yaml:"name"`
						EmptyDir *struct{} `yaml:"emptyDir"`
					} `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
			VolumeClaimTemplates []struct {
				Metadata k8sMeta `yaml:"metadata"`
			} `yaml:"volumeClaimTemplates"`
		} `yaml:"spec"`
	}
	k8sContainer struct {
		Name    string   `yaml:"name"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Env     []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
)

// k8sDocs decodes every document of a YAML file into kind: the raw
// documents, re-encoded, for decoding into one of the types above.
func k8sDocs(t *testing.T, file string) map[string][][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string][][]byte{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		kind, _ := doc["kind"].(string)
		api, _ := doc["apiVersion"].(string)
		if kind == "" || api == "" {
			t.Errorf("%s: a document without kind or apiVersion: %v", file, doc)
			continue
		}
		raw, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		docs[kind] = append(docs[kind], raw)
	}
	return docs
}

func k8sDecode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// serveHelpFlags returns the flags lockstitch serve -h lists.
func serveHelpFlags(t *testing.T) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	if code := run([]string{"serve", "-h"}, &out, &out); code != 0 {
		t.Fatalf("serve -h: exit %d\n%s", code, out.String())
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 20 || !flags["peers"] {
		t.Fatalf("serve -h lists %d flags (%v), not the ones expected:\n%s", len(flags), flags, out.String())
	}
	return flags
}

// clientHelpEnv returns the environment variables lockstitch status -h
// names: the client commands' (LOCKSTITCH_ADDR), which a node's container
// may set for the CLI run in it.
func clientHelpEnv(t *testing.T) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	if code := run([]string{"status", "-h"}, &out, &out); code != 0 {
		t.Fatalf("status -h: exit %d\n%s", code, out.String())
	}
	env := map[string]bool{}
	for _, m := range regexp.MustCompile(`env (LOCKSTITCH_[A-Z_]+)`).FindAllStringSubmatch(out.String(), -1) {
		env[m[1]] = true
	}
	if !env["LOCKSTITCH_ADDR"] {
		t.Fatalf("status -h names no LOCKSTITCH_ADDR:\n%s", out.String())
	}
	return env
}

// TestKubernetesExamples checks the manifests in examples/kubernetes as
// far as it can without a cluster: they parse; every flag and
// LOCKSTITCH_ variable given to lockstitch serve is one serve -h lists
// (or, for the variables, status -h: the CLI's);
// each StatefulSet has its headless Service (publishing not-ready pods)
// and, with several nodes, a PodDisruptionBudget; selectors match the pod
// labels; readiness is /readyz and liveness /healthz on the admin port;
// requests are set and the memory limit exceeds the pending-bytes bound;
// the data directory is on a persistent volume. And for each pod of each
// StatefulSet, its arguments and environment, with the pod's name,
// namespace and ordinal substituted as Kubernetes would, make a node
// configuration that serve accepts, with the ordinal as node id and the
// pod's stable DNS name as its addresses.
func TestKubernetesExamples(t *testing.T) {
	helpFlags := serveHelpFlags(t)
	files, err := filepath.Glob("../../examples/kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, file := range files {
		docs := k8sDocs(t, file)
		services := map[string]k8sService{}
		for _, raw := range docs["Service"] {
			s := k8sDecode[k8sService](t, raw)
			services[s.Metadata.Name] = s
		}
		var pdbs []k8sPDB
		for _, raw := range docs["PodDisruptionBudget"] {
			pdbs = append(pdbs, k8sDecode[k8sPDB](t, raw))
		}
		if len(docs["StatefulSet"]) == 0 {
			t.Errorf("%s: no StatefulSet", file)
		}
		for _, raw := range docs["StatefulSet"] {
			sts := k8sDecode[k8sStatefulSet](t, raw)
			checkStatefulSet(t, file, sts, services, pdbs, helpFlags)
		}
	}
}

func checkStatefulSet(t *testing.T, file string, sts k8sStatefulSet, services map[string]k8sService, pdbs []k8sPDB, helpFlags map[string]bool) {
	where := file + ": StatefulSet " + sts.Metadata.Name
	spec := sts.Spec
	podLabels := spec.Template.Metadata.Labels
	if len(spec.Selector.MatchLabels) == 0 || !labelsMatch(spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: selector %v does not select its pods %v", where, spec.Selector.MatchLabels, podLabels)
	}
	multi := spec.Replicas > 1
	if svc, ok := services[spec.ServiceName]; !ok && multi {
		t.Errorf("%s: no Service %q (its serviceName) in the file", where, spec.ServiceName)
	} else if ok {
		if svc.Spec.ClusterIP != "None" || !labelsMatch(svc.Spec.Selector, podLabels) {
			t.Errorf("%s: Service %s is not headless over its pods", where, spec.ServiceName)
		}
		if multi && !svc.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: Service %s must publish not-ready pods: nodes are ready only once they reach each other", where, spec.ServiceName)
		}
	}
	if multi {
		if spec.PodManagementPolicy != "Parallel" {
			t.Errorf("%s: podManagementPolicy %q: with OrderedReady the first pod waits for a readiness only a quorum gives", where, spec.PodManagementPolicy)
		}
		covered := false
		for _, p := range pdbs {
			if labelsMatch(p.Spec.Selector.MatchLabels, podLabels) &&
				(p.Spec.MaxUnavailable != nil && *p.Spec.MaxUnavailable == 1 || p.Spec.MinAvailable != nil && *p.Spec.MinAvailable > spec.Replicas/2) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget keeps a majority of its pods", where)
		}
	}
	claims := map[string]bool{}
	for _, c := range spec.VolumeClaimTemplates {
		claims[c.Metadata.Name] = true
	}
	emptyDirs := map[string]bool{}
	for _, v := range spec.Template.Spec.Volumes {
		if v.EmptyDir != nil {
			emptyDirs[v.Name] = true
		}
	}
	serving := 0
	for _, c := range spec.Template.Spec.Containers {
		if len(c.Args) == 0 || c.Args[0] != "serve" || !strings.Contains(c.Image, "lockstitch") {
			continue
		}
		serving++
		where := where + " container " + c.Name
		if len(c.Command) != 0 {
			t.Errorf("%s: command %q replaces the image's entrypoint, /lockstitch", where, c.Command)
		}
		for _, a := range c.Args[1:] {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "-") || !helpFlags[name] {
				t.Errorf("%s: argument %q is not a flag lockstitch serve -h lists", where, a)
			}
		}
		helpEnv := clientHelpEnv(t)
		for f := range helpFlags {
			helpEnv[envName(f)] = true
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "LOCKSTITCH_") && !helpEnv[e.Name] {
				t.Errorf("%s: environment variable %s is not one of lockstitch serve's (serve -h)", where, e.Name)
			}
		}
		if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" {
			t.Errorf("%s: no cpu or memory request", where)
		}
		mounts := map[string]string{} // mount path: volume
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for i := spec.Ordinals.Start; i < spec.Ordinals.Start+max(spec.Replicas, 1); i++ {
			pod := fmt.Sprintf("%s-%d", sts.Metadata.Name, i)
			s := podSettings(t, where+" pod "+pod, c, map[string]string{
				"metadata.name": pod, "metadata.namespace": "demo",
				"metadata.labels['apps.kubernetes.io/pod-index']": strconv.Itoa(i),
			})
			if s == nil {
				continue
			}
			if multi {
				if s.ID != uint64(i) {
					t.Errorf("%s pod %s: node id %d, want its ordinal %d", where, pod, s.ID, i)
				}
				dns := pod + "." + spec.ServiceName + "."
				if !strings.HasPrefix(s.RaftAddr, dns) || !strings.HasPrefix(s.ClientAddr, dns) {
					t.Errorf("%s pod %s: raft-addr %s and client-addr %s must be its stable name %s...", where, pod, s.RaftAddr, s.ClientAddr, dns)
				}
				if peers, _ := parsePeers(s.Peers); len(peers) != spec.Replicas {
					t.Errorf("%s pod %s: %d peers for %d replicas", where, pod, len(peers), spec.Replicas)
				}
			}
			if i > spec.Ordinals.Start {
				continue // the rest is the same for every pod
			}
			_, adminPort, err := net.SplitHostPort(s.AdminAddr)
			if err != nil {
				t.Errorf("%s: admin-addr %q: %v", where, s.AdminAddr, err)
			}
			for _, p := range []struct {
				what  string
				probe *k8sProbe
				path  string
			}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s: %s probe is not GET %s", where, p.what, p.path)
					continue
				}
				port := fmt.Sprint(p.probe.HTTPGet.Port)
				if n, ok := ports[port]; ok {
					port = strconv.Itoa(n)
				}
				if port != adminPort {
					t.Errorf("%s: %s probe on port %s, not the admin port %s", where, p.what, port, adminPort)
				}
			}
			if vol := mounts[s.DataDir]; !claims[vol] {
				t.Errorf("%s: data-dir %s is not on a persistent volume claim (mount %q)", where, s.DataDir, vol)
			}
			if limit, ok := c.Resources.Limits["memory"]; ok {
				if n, err := parseBytes(strings.TrimSuffix(limit, "i") + "iB"); err != nil || n <= s.MaxNodePendingBytes {
					t.Errorf("%s: memory limit %s does not exceed --max-node-pending-bytes %d (%v)", where, limit, s.MaxNodePendingBytes, err)
				}
			}
			if s.UnixSocket != "" {
				vol, ok := mounts[path.Dir(s.UnixSocket)]
				shared := false
				for _, o := range spec.Template.Spec.Containers {
					for _, m := range o.VolumeMounts {
						shared = shared || o.Name != c.Name && m.Name == vol
					}
				}
				if !ok || !emptyDirs[vol] || !shared {
					t.Errorf("%s: unix-socket %s is not in an emptyDir volume shared with another container", where, s.UnixSocket)
				}
			}
		}
	}
	if serving != 1 {
		t.Errorf("%s: %d containers run lockstitch serve, want 1", where, serving)
	}
}

// podSettings returns the serve settings a container gets in a pod whose
// downward API fields are fields: its environment expanded in order and
// its arguments expanded with it, as Kubernetes does with $(NAME), then
// parsed and validated as lockstitch serve does. It reports problems on
// t and returns nil.
func podSettings(t *testing.T, where string, c k8sContainer, fields map[string]string) *serveSettings {
	t.Helper()
	env := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	expand := func(s string) string {
		return ref.ReplaceAllStringFunc(s, func(m string) string {
			name := ref.FindStringSubmatch(m)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("%s: $(%s) is not defined before it is used", where, name)
			}
			return v
		})
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("%s: %s: field %s is not one this test knows a pod to have", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		default:
			env[e.Name] = expand(e.Value)
		}
	}
	// Clear the LOCKSTITCH_ variables of this process, then set the pod's.
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "LOCKSTITCH_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for name, v := range env {
		if strings.HasPrefix(name, "LOCKSTITCH_") {
			t.Setenv(name, v)
		}
	}
	args := make([]string, len(c.Args)-1)
	for i, a := range c.Args[1:] {
		args[i] = expand(a)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s := defaultServeSettings()
	settings := bindSettings(fs, &s)
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		t.Errorf("%s: serve %q: %v %q", where, args, err, fs.Args())
		return nil
	}
	if err := loadSettings(settings, ""); err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	if _, err := s.nodeConfig(slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("%s: serve %q with %v: %v", where, args, env, err)
		return nil
	}
	return &s
}

// labelsMatch reports whether every label of sel is in labels.
func labelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}
