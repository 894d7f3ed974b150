ALTER TABLE "plan_changes" ADD COLUMN "token_limit_before" bigint;--> statement-breakpoint
ALTER TABLE "plan_changes" ADD COLUMN "token_limit_after" bigint;