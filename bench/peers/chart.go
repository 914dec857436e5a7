package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// systemColors are the chart's colours by system (colour-blind safe,
// Okabe-Ito); others get grey.
var systemColors = map[string]color.RGBA{
	"lockstitch":    {0, 114, 178, 255},
	"lockstitch-kv": {86, 180, 233, 255},
	"dragonboat":    {230, 159, 0, 255},
	"etcd":          {0, 158, 115, 255},
	"jetstream":     {204, 121, 167, 255},
}

// writeChart draws the results in format (svg or png): throughput (ops/s) above and
// p99 latency below, one series of points per system across the cells in
// the results' order,
// both on log scales (the cells span three orders of magnitude).
func writeChart(w io.Writer, format string, r *report) error {
	cells := cellsOf(r.Results)
	labels := make([]string, len(cells))
	for i, c := range cells {
		labels[i] = c.label()
	}
	tput := plot.New()
	tput.Title.Text = fmt.Sprintf("3 replicas on 127.0.0.1, %d CPUs; commit %s", r.Machine.CPUs, r.Commit)
	tput.Y.Label.Text = "ops/s"
	lat := plot.New()
	lat.Y.Label.Text = "p99 latency (ms)"
	for _, p := range []*plot.Plot{tput, lat} {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.NominalX(labels...)
		// Every cell's tick in range, whatever points it has.
		p.X.Min, p.X.Max = -0.5, float64(len(cells))-0.5
		p.X.Tick.Label.Rotation = 0.5
		p.X.Tick.Label.XAlign = draw.XRight
		p.Add(plotter.NewGrid())
	}
	legend := plot.NewLegend()
	legend.Top, legend.Left = true, true
	var maxT, minT, maxL, minL float64
	for k, s := range r.Systems {
		// Each system's points a little apart, so that close ones do not
		// hide each other.
		dx := 0.12 * (float64(k) - float64(len(r.Systems)-1)/2)
		var tp, lp plotter.XYs
		for _, x := range r.Results {
			if x.System != s.Name || x.Skipped != "" {
				continue
			}
			i := slices.Index(cells, x.cell)
			if i < 0 {
				continue
			}
			tp = append(tp, plotter.XY{X: float64(i) + dx, Y: x.OpsPerSec})
			lp = append(lp, plotter.XY{X: float64(i) + dx, Y: x.P99us / 1e3})
			maxT, minT = maxOf(maxT, x.OpsPerSec), minOf(minT, x.OpsPerSec)
			maxL, minL = maxOf(maxL, x.P99us/1e3), minOf(minL, x.P99us/1e3)
		}
		if len(tp) == 0 {
			continue
		}
		col, ok := systemColors[s.Name]
		if !ok {
			col = color.RGBA{128, 128, 128, 255}
		}
		var first *plotter.Scatter
		for _, pl := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{tput, tp}, {lat, lp}} {
			sc, err := plotter.NewScatter(pl.xys)
			if err != nil {
				return err
			}
			sc.GlyphStyle.Color = col
			sc.GlyphStyle.Radius = vg.Points(3.5)
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			pl.p.Add(sc)
			if first == nil {
				first = sc
			}
		}
		legend.Add(fmt.Sprintf("%s (%s)", s.Name, s.Short), first)
	}
	if maxT == 0 || maxL == 0 {
		return errors.New("chart: no cell has results")
	}
	// Whole decades.
	tput.Y.Min, tput.Y.Max = decadeBelow(minT), decadeAbove(maxT)
	lat.Y.Min, lat.Y.Max = decadeBelow(minL), decadeAbove(maxL)
	width := vg.Length(max(6, 0.55*float64(len(cells)))) * vg.Inch
	// The legend above the two panels, one line per system.
	legendHeight := vg.Length(len(r.Systems))*legend.TextStyle.Height("Xg")*1.2 + 4*vg.Millimeter
	height := 7*vg.Inch + legendHeight
	c, err := draw.NewFormattedCanvas(width, height, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	legend.Draw(draw.Crop(dc, vg.Inch, 0, height-legendHeight, -2*vg.Millimeter))
	dc = draw.Crop(dc, 0, 0, 0, -legendHeight)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 2 * vg.Millimeter, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadLeft: vg.Millimeter, PadRight: 3 * vg.Millimeter}
	canvases := plot.Align([][]*plot.Plot{{tput}, {lat}}, tiles, dc)
	tput.Draw(canvases[0][0])
	lat.Draw(canvases[1][0])
	_, err = c.WriteTo(w)
	return err
}

// decadeBelow and decadeAbove return the powers of ten around v > 0.
func decadeBelow(v float64) float64 { return math.Pow(10, math.Floor(math.Log10(v))) }
func decadeAbove(v float64) float64 { return math.Pow(10, math.Ceil(math.Log10(v))) }

// maxOf and minOf treat 0 as unset.
func maxOf(a, b float64) float64 {
	if a == 0 || b > a {
		return b
	}
	return a
}

func minOf(a, b float64) float64 {
	if a == 0 || b < a {
		return b
	}
	return a
}
