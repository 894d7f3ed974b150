ALTER TABLE "users" ADD COLUMN "period_anchor_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
-- Backfill: a user's anchor is the start of the current run of monthly periods, which is the
-- latest of the user's creation, usage reset and switch to pro. Each of those timestamps is the
-- same now() that set period_started_at then. That start is taken only when the current
-- period_started_at equals it plus whole months in UTC, clamped to short months the way the
-- app computes boundaries, compared to the millisecond because the app stores boundaries with
-- that precision. Otherwise, for example when periods already moved to an earlier day, the
-- anchor is period_started_at, so the backfill never makes a period shorter than a month.
WITH "latest_start" AS (
  SELECT
    "users"."id",
    GREATEST(
      "users"."created_at",
      (
        SELECT max("plan_changes"."created_at") FROM "plan_changes"
        WHERE "plan_changes"."user_id" = "users"."id"
          AND (
            "plan_changes"."reason" = 'usage_reset'
            OR ("plan_changes"."reason" = 'plan_switch' AND "plan_changes"."to_plan" = 'pro')
          )
      )
    ) AT TIME ZONE 'UTC' AS "started",
    "users"."period_started_at" AT TIME ZONE 'UTC' AS "current"
  FROM "users"
),
"run" AS (
  SELECT
    "id",
    "started",
    "current",
    ((extract(year FROM "current") - extract(year FROM "started")) * 12
      + extract(month FROM "current") - extract(month FROM "started"))::int AS "months"
  FROM "latest_start"
)
UPDATE "users" SET "period_anchor_at" = CASE
  WHEN "run"."months" >= 0
    AND date_trunc('milliseconds', "run"."started" + make_interval(months => "run"."months"))
      = date_trunc('milliseconds', "run"."current")
    THEN "run"."started" AT TIME ZONE 'UTC'
  ELSE "users"."period_started_at"
END
FROM "run"
WHERE "run"."id" = "users"."id";
