CREATE TABLE "summary_comments" (
	"repository_id" bigint NOT NULL,
	"pr_number" integer NOT NULL,
	"comment_id" bigint,
	"run_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "summary_comments_repository_id_pr_number_pk" PRIMARY KEY("repository_id","pr_number")
);
--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "preview_job_id" uuid;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "apply_started_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "apply_mode" text;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "applied_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "applied_commit_sha" text;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD COLUMN "applied_review_id" bigint;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "pr_updated_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "analyze_job_id" uuid;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "check_run_id" bigint;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "check_run_annotations" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "reported_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD COLUMN "report_error" text;--> statement-breakpoint
ALTER TABLE "summary_comments" ADD CONSTRAINT "summary_comments_run_id_pr_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."pr_runs"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "pr_runs_repository_id_pr_number_index" ON "pr_runs" USING btree ("repository_id","pr_number");--> statement-breakpoint
CREATE INDEX "pr_runs_check_run_id_index" ON "pr_runs" USING btree ("check_run_id");