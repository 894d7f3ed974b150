import type { FC } from 'hono/jsx';
import type { DailyUsage } from '../../../usage/daily-usage.ts';

const width = 960;
const height = 200;
const padding = { top: 12, right: 8, bottom: 24, left: 56 };

/** Rounds up to 1, 2 or 5 times a power of ten, so the axis label is a round number. */
export function niceMaximum(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

const numberFormat = new Intl.NumberFormat('en-US');

/**
 * Bar chart of tokens per day, platform and own-key tokens side by side, drawn as SVG. A period
 * without model calls gets the line "No model calls this period yet." in its place, because
 * its axis would run from 0 to 1.
 */
export const UsageChart: FC<{ days: DailyUsage[] }> = ({ days }) => {
  const total = days.reduce((sum, day) => sum + day.platform + day.own, 0);
  if (total === 0) {
    return (
      <figure class="usage-chart">
        <figcaption>Tokens per day this period (UTC)</figcaption>
        <p class="muted">No model calls this period yet.</p>
      </figure>
    );
  }

  const plotWidth = width - padding.left - padding.right;
  const plotHeight = height - padding.top - padding.bottom;
  const maximum = niceMaximum(Math.max(0, ...days.map((day) => Math.max(day.platform, day.own))));
  const slot = days.length > 0 ? plotWidth / days.length : plotWidth;
  const barWidth = Math.max(slot * 0.4, 1);
  const barHeight = (tokens: number) => (tokens / maximum) * plotHeight;
  const baseline = padding.top + plotHeight;
  const labelIndexes = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])];

  return (
    <figure class="usage-chart">
      <figcaption>Tokens per day this period (UTC)</figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={`Tokens per day: ${numberFormat.format(total)} in total this period`}
      >
        <line class="axis" x1={padding.left} y1={baseline} x2={width - padding.right} y2={baseline} />
        <line
          class="grid"
          x1={padding.left}
          y1={padding.top}
          x2={width - padding.right}
          y2={padding.top}
        />
        <text class="axis-label" x={padding.left - 6} y={padding.top + 4} text-anchor="end">
          {numberFormat.format(maximum)}
        </text>
        <text class="axis-label" x={padding.left - 6} y={baseline + 4} text-anchor="end">
          0
        </text>
        {days.map((day, index) => {
          const x = padding.left + index * slot + (slot - 2 * barWidth) / 2;
          const platformHeight = barHeight(day.platform);
          const ownHeight = barHeight(day.own);
          return (
            <g data-day={day.day}>
              {day.platform > 0 ? (
                <rect
                  class="bar platform"
                  x={x.toFixed(1)}
                  y={(baseline - platformHeight).toFixed(1)}
                  width={barWidth.toFixed(1)}
                  height={platformHeight.toFixed(1)}
                >
                  <title>{`${day.day}: ${numberFormat.format(day.platform)} platform tokens`}</title>
                </rect>
              ) : null}
              {day.own > 0 ? (
                <rect
                  class="bar own"
                  x={(x + barWidth).toFixed(1)}
                  y={(baseline - ownHeight).toFixed(1)}
                  width={barWidth.toFixed(1)}
                  height={ownHeight.toFixed(1)}
                >
                  <title>{`${day.day}: ${numberFormat.format(day.own)} own-key tokens`}</title>
                </rect>
              ) : null}
            </g>
          );
        })}
        {days.length > 0
          ? labelIndexes.map((index) => (
              <text
                class="axis-label"
                x={(padding.left + index * slot + slot / 2).toFixed(1)}
                y={height - 6}
                text-anchor="middle"
              >
                {days[index]!.day.slice(5)}
              </text>
            ))
          : null}
      </svg>
      <p class="legend">
        <span class="swatch platform"></span> Platform key
        <span class="swatch own"></span> Own key
      </p>
    </figure>
  );
};
