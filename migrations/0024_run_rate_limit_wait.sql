ALTER TABLE "pr_runs" ADD COLUMN "rate_limited_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "rate_limited_job_id" uuid;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "rate_limited_queue" text;