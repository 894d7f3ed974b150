ALTER TABLE "pr_runs" ADD COLUMN "unchecked_files" text[] DEFAULT '{}'::text[] NOT NULL;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "unlisted_files" integer DEFAULT 0 NOT NULL;