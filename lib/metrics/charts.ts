/**
 * Charts for reports: Vega-Lite specs rendered headless to SVG (vega's 'none' renderer, no canvas)
 * and rasterised to PNG with resvg. Text uses the system's sans-serif font (DejaVu Sans where
 * present).
 */
import { Resvg } from '@resvg/resvg-js';
import { writeFileAtomic } from '../util/fs.js';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** One point of a line chart. */
export interface LinePoint {
  x: number;
  y: number;
  /** Name of the line the point belongs to (legend entry). */
  series: string;
}

/** A multi-line chart: one line per series, points marked. */
export interface LineChart {
  title: string;
  /** One line, or several (long text is not wrapped). */
  subtitle?: string | string[];
  xTitle: string;
  yTitle: string;
  /** Legend title. */
  seriesTitle: string;
  points: LinePoint[];
  /** Legend order (default: order of first appearance). */
  order?: string[];
  /** Series drawn dashed (e.g. baselines). */
  dashed?: string[];
  /** Plot area in CSS pixels (default 640 × 360). */
  width?: number;
  height?: number;
}

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';

/** The Vega-Lite spec of a line chart (y axis not forced to include 0). */
export function lineChartSpec(c: LineChart): TopLevelSpec {
  const order = c.order ?? [...new Set(c.points.map((p) => p.series))];
  const dashed = new Set(c.dashed ?? []);
  const values = c.points.map((p) => ({ ...p, style: dashed.has(p.series) ? 'dashed' : 'solid' }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: c.title, subtitle: c.subtitle, anchor: 'start', fontSize: 16, subtitleFontSize: 12 },
    width: c.width ?? 640,
    height: c.height ?? 360,
    background: 'white',
    padding: 12,
    data: { values },
    mark: { type: 'line', point: { size: 30 }, strokeWidth: 2 },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: c.xTitle, axis: { tickMinStep: 1 } },
      y: { field: 'y', type: 'quantitative', title: c.yTitle, scale: { zero: false } },
      color: {
        field: 'series', type: 'nominal', title: c.seriesTitle, sort: order,
        scale: { scheme: order.length > 10 ? 'category20' : 'tableau10' }, legend: { labelLimit: 360, titleLimit: 360, symbolType: 'stroke' },
      },
      strokeDash: { field: 'style', type: 'nominal', legend: null, scale: { domain: ['solid', 'dashed'], range: [[1, 0], [6, 4]] } },
    },
    config: { font: FONT, axis: { labelFontSize: 11, titleFontSize: 13 }, legend: { labelFontSize: 11, titleFontSize: 12 } },
  };
}

/** Renders a Vega-Lite spec to an SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try { return await view.toSVG(); } finally { view.finalize(); }
}

/** Rasterises an SVG document to PNG bytes at `scale` × its size (2 = crisp on high-DPI screens). */
export function svgToPng(svg: string, scale = 2): Uint8Array {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
    background: 'white',
  });
  return resvg.render().asPng();
}

/**
 * Writes `<base>.svg` and `<base>.png` of a Vega-Lite spec.
 * @returns the two paths
 */
export async function writeChart(base: string, spec: TopLevelSpec): Promise<{ svg: string; png: string }> {
  const svg = await renderSvg(spec);
  writeFileAtomic(`${base}.svg`, svg);
  writeFileAtomic(`${base}.png`, svgToPng(svg));
  return { svg: `${base}.svg`, png: `${base}.png` };
}
