ALTER TABLE "patch_requests" ADD COLUMN "apply_job_id" uuid;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "apply_rate_limited_until" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "apply_error" text;