package scenario

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot size: wide enough for a run of a few minutes to show its phases.
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 4 * vg.Inch
)

// line is one drawn line: a legend and its points.
type line struct {
	legend string
	points []Point
}

// linesOf resolves a plot's line specs against the sampler.
func linesOf(p PlotSpec, sampler *Sampler) []line {
	var out []line
	for _, ls := range p.Lines {
		var matched []*Series
		if sampler != nil {
			matched = sampler.Select(ls.Select)
		}
		if ls.Sum {
			legend := ls.Legend
			if legend == "" {
				legend = ls.Select.String()
			}
			if ls.Rate {
				legend += " (per second)"
			}
			out = append(out, line{legend, Sum(matched, ls.Rate)})
			continue
		}
		for _, s := range matched {
			legend := s.Target + labelString(s.Labels)
			if ls.Legend != "" {
				legend = ls.Legend + " " + legend
			}
			ps := s.Points
			if ls.Rate {
				ps = s.Rate()
				legend += " (per second)"
			}
			out = append(out, line{legend, ps})
		}
	}
	return out
}

// renderTimeSeries draws p to path as a PNG and returns how many points it
// drew. Time runs on x in seconds since start.
func renderTimeSeries(path string, p PlotSpec, sampler *Sampler, start time.Time) (int, error) {
	lines := linesOf(p, sampler)
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.X.Label.Text = "seconds since the scenario started"
	pl.Y.Label.Text = p.YLabel
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.Add(plotter.NewGrid())
	n := 0
	for i, l := range lines {
		if len(l.points) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(l.points))
		for j, pt := range l.points {
			xys[j].X = pt.T.Sub(start).Seconds()
			xys[j].Y = pt.V
		}
		ln, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return n, err
		}
		c := plotutil.Color(i)
		ln.Color = c
		ln.Width = vg.Points(1.5)
		// Lines that coincide (lines received and acknowledged) stay
		// visible through their dashes.
		ln.Dashes = plotutil.Dashes(i)
		sc.Color = c
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(1.5)
		pl.Add(ln, sc)
		pl.Legend.Add(l.legend, ln)
		n += len(l.points)
	}
	if n == 0 {
		return 0, errors.New("no sampled points for " + describeLines(p))
	}
	// Room above the data for the legend, and zero in view.
	pl.Y.Min = min(pl.Y.Min, 0)
	pl.Y.Max = pl.Y.Min + (pl.Y.Max-pl.Y.Min)*(1.15+0.07*float64(len(lines)))
	if pl.Y.Max == pl.Y.Min {
		pl.Y.Max = 1
	}
	return n, pl.Save(plotWidth, plotHeight, path)
}

func describeLines(p PlotSpec) string {
	s := ""
	for i, l := range p.Lines {
		if i > 0 {
			s += ", "
		}
		s += l.Select.String()
	}
	return s
}

// renderBars draws b to path as a PNG and returns its non-zero bars.
func renderBars(path string, b Bars) (int, error) {
	if len(b.Labels) != len(b.Values) || len(b.Values) == 0 {
		return 0, fmt.Errorf("bar chart %s: %d labels for %d values", b.File, len(b.Labels), len(b.Values))
	}
	n := 0
	for _, v := range b.Values {
		if v != 0 {
			n++
		}
	}
	if n == 0 {
		return 0, errors.New("every bar is zero")
	}
	pl := plot.New()
	pl.Title.Text = b.Title
	pl.Y.Label.Text = b.YLabel
	pl.Add(plotter.NewGrid())
	width := (plotWidth - vg.Inch) / vg.Length(len(b.Values)) * 6 / 10
	bc, err := plotter.NewBarChart(plotter.Values(b.Values), width)
	if err != nil {
		return 0, err
	}
	bc.Color = plotutil.Color(0)
	bc.LineStyle.Width = 0
	pl.Add(bc)
	pl.NominalX(b.Labels...)
	// Each bar's value above it, and room for them.
	xys := make(plotter.XYs, len(b.Values))
	texts := make([]string, len(b.Values))
	top := 0.0
	for i, v := range b.Values {
		xys[i] = plotter.XY{X: float64(i), Y: max(v, 0)}
		texts[i] = strconv.FormatFloat(v, 'g', 3, 64)
		top = max(top, v)
	}
	lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts})
	if err != nil {
		return 0, err
	}
	for i := range lbl.TextStyle {
		lbl.TextStyle[i].XAlign = draw.XCenter
		lbl.TextStyle[i].YAlign = draw.YBottom
	}
	pl.Add(lbl)
	pl.Y.Min = min(pl.Y.Min, 0)
	pl.Y.Max = max(pl.Y.Max, top*1.15)
	return n, pl.Save(plotWidth, plotHeight, path)
}
