-- An UPDATE that moves a user's period start or anchor but leaves period_ends_at as it was
-- (a statement written by hand, or code that does not know about the stored end) marks the
-- end as not computed (''). The rollover job then recomputes it on its next run, and the
-- usage stats compute the end until then, instead of trusting an end that belongs to the
-- old period. The app's own writers store a new end together with a new start.
CREATE FUNCTION users_mark_period_end_stale() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
  NEW.period_end_billing_period := '';
  RETURN NEW;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER users_period_end_stale
BEFORE UPDATE OF period_started_at, period_anchor_at ON users
FOR EACH ROW
WHEN (
  NEW.period_ends_at IS NOT DISTINCT FROM OLD.period_ends_at
  AND (
    NEW.period_started_at IS DISTINCT FROM OLD.period_started_at
    OR NEW.period_anchor_at IS DISTINCT FROM OLD.period_anchor_at
  )
)
EXECUTE FUNCTION users_mark_period_end_stale();
