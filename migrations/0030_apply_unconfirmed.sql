ALTER TABLE "patch_requests" ADD COLUMN "apply_unconfirmed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "apply_unconfirmed_mode" text;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "apply_unconfirmed_commit_sha" text;