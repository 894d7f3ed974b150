ALTER TABLE "token_events" ADD COLUMN "reported_prompt_tokens" integer;--> statement-breakpoint
ALTER TABLE "token_events" ADD COLUMN "reported_completion_tokens" integer;--> statement-breakpoint
ALTER TABLE "token_events" ADD COLUMN "reported_total_tokens" integer;