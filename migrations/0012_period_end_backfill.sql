-- Backfill: each user's period end for BILLING_PERIOD=monthly, the default, computed as the
-- app's periodEnd computes it. Boundaries are the anchor plus whole months in UTC, clamped to
-- short months (PostgreSQL's timestamp + interval clamps the day of month the same way), and
-- the end is the first boundary after the period start. Start and anchor are truncated to
-- milliseconds first, as the app reads them. A migration cannot read BILLING_PERIOD, so the
-- rows are marked as computed for 'monthly'. Under another setting the rollover job
-- recomputes them on its next run, and the usage stats compute the end until then.
WITH "period" AS (
  SELECT
    "id",
    date_trunc('milliseconds', "period_started_at" AT TIME ZONE 'UTC') AS "started",
    date_trunc('milliseconds', "period_anchor_at" AT TIME ZONE 'UTC') AS "anchor"
  FROM "users"
),
"boundary" AS (
  SELECT
    "id",
    "started",
    "anchor",
    ((extract(year FROM "started") - extract(year FROM "anchor")) * 12
      + extract(month FROM "started") - extract(month FROM "anchor"))::int AS "months"
  FROM "period"
)
UPDATE "users" SET
  "period_ends_at" = CASE
    WHEN "boundary"."anchor" + make_interval(months => "boundary"."months") > "boundary"."started"
      THEN "boundary"."anchor" + make_interval(months => "boundary"."months")
    ELSE "boundary"."anchor" + make_interval(months => "boundary"."months" + 1)
  END AT TIME ZONE 'UTC',
  "period_end_billing_period" = 'monthly'
FROM "boundary"
WHERE "boundary"."id" = "users"."id";
