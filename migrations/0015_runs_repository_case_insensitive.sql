DROP INDEX "pr_runs_repository_pr_number_index";--> statement-breakpoint
CREATE INDEX "pr_runs_lower_repository_pr_number_index" ON "pr_runs" USING btree (lower("repository"),"pr_number");