CREATE TABLE "installations" (
	"id" bigint PRIMARY KEY NOT NULL,
	"account_login" text NOT NULL,
	"account_id" bigint NOT NULL,
	"account_type" text NOT NULL,
	"user_id" uuid,
	"suspended_at" timestamp with time zone,
	"deleted_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "webhook_deliveries" (
	"delivery_id" text PRIMARY KEY NOT NULL,
	"event" text NOT NULL,
	"action" text,
	"installation_id" bigint,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"outcome" text
);
--> statement-breakpoint
CREATE TABLE "patch_files" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"patch_request_id" uuid NOT NULL,
	"path" text NOT NULL,
	"base_blob_sha" text,
	"original_text" text,
	"proposed_text" text,
	"diff" text,
	"status" text DEFAULT 'pending' NOT NULL,
	"error" text,
	"provider" text,
	"model" text,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"generation" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "patch_files_patchRequestId_path_unique" UNIQUE("patch_request_id","path")
);
--> statement-breakpoint
CREATE TABLE "patch_request_findings" (
	"patch_request_id" uuid NOT NULL,
	"finding_id" uuid NOT NULL,
	CONSTRAINT "patch_request_findings_patch_request_id_finding_id_pk" PRIMARY KEY("patch_request_id","finding_id")
);
--> statement-breakpoint
CREATE TABLE "patch_requests" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"error" text,
	"files_total" integer DEFAULT 0 NOT NULL,
	"files_done" integer DEFAULT 0 NOT NULL,
	"total_tokens" bigint DEFAULT 0 NOT NULL,
	"completed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "findings" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"path" text NOT NULL,
	"start_line" integer NOT NULL,
	"end_line" integer NOT NULL,
	"rule_id" text NOT NULL,
	"severity" text NOT NULL,
	"message" text NOT NULL,
	"source" text DEFAULT 'builtin' NOT NULL,
	"excerpt" text DEFAULT '' NOT NULL,
	"fingerprint" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "findings_runId_fingerprint_unique" UNIQUE("run_id","fingerprint")
);
--> statement-breakpoint
CREATE TABLE "pr_runs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"installation_id" bigint NOT NULL,
	"repository_id" bigint NOT NULL,
	"repository" text NOT NULL,
	"pr_number" integer NOT NULL,
	"pr_title" text DEFAULT '' NOT NULL,
	"base_sha" text NOT NULL,
	"head_sha" text NOT NULL,
	"head_ref" text NOT NULL,
	"head_repository" text NOT NULL,
	"status" text DEFAULT 'queued' NOT NULL,
	"error" text,
	"completed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pr_runs_repositoryId_prNumber_headSha_unique" UNIQUE("repository_id","pr_number","head_sha")
);
--> statement-breakpoint
CREATE TABLE "plan_changes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"from_plan" text,
	"to_plan" text NOT NULL,
	"tokens_used_before" bigint NOT NULL,
	"tokens_used_after" bigint NOT NULL,
	"changed_by" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "token_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"user_id" uuid NOT NULL,
	"patch_request_id" uuid,
	"path" text,
	"provider" text NOT NULL,
	"model" text NOT NULL,
	"key_source" text NOT NULL,
	"prompt_tokens" integer NOT NULL,
	"completion_tokens" integer NOT NULL,
	"total_tokens" integer NOT NULL,
	"charged_tokens" integer NOT NULL,
	"reservation_id" uuid,
	"idempotency_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "token_events_idempotencyKey_unique" UNIQUE("idempotency_key")
);
--> statement-breakpoint
CREATE TABLE "token_reservations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"tokens" bigint NOT NULL,
	"idempotency_key" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "token_reservations_tokens_positive" CHECK ("token_reservations"."tokens" > 0)
);
--> statement-breakpoint
CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"name" text NOT NULL,
	"token_hash" text NOT NULL,
	"last_four" text NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "api_tokens_tokenHash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"github_id" bigint,
	"login" text NOT NULL,
	"name" text,
	"role" text DEFAULT 'user' NOT NULL,
	"plan" text DEFAULT 'free' NOT NULL,
	"token_limit" bigint DEFAULT 1000 NOT NULL,
	"tokens_used" bigint DEFAULT 0 NOT NULL,
	"tokens_reserved" bigint DEFAULT 0 NOT NULL,
	"period_started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "users_githubId_unique" UNIQUE("github_id"),
	CONSTRAINT "users_login_unique" UNIQUE("login"),
	CONSTRAINT "users_tokens_used_nonnegative" CHECK ("users"."tokens_used" >= 0),
	CONSTRAINT "users_tokens_reserved_nonnegative" CHECK ("users"."tokens_reserved" >= 0),
	CONSTRAINT "users_tokens_within_limit" CHECK ("users"."token_limit" < 0 OR "users"."tokens_used" <= "users"."token_limit")
);
--> statement-breakpoint
CREATE TABLE "user_api_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"provider" text NOT NULL,
	"ciphertext" text NOT NULL,
	"nonce" text NOT NULL,
	"master_key_version" integer NOT NULL,
	"last_four" text NOT NULL,
	"last_used_at" timestamp with time zone,
	"unusable_reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "user_api_keys_userId_provider_unique" UNIQUE("user_id","provider")
);
--> statement-breakpoint
ALTER TABLE "installations" ADD CONSTRAINT "installations_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "patch_files" ADD CONSTRAINT "patch_files_patch_request_id_patch_requests_id_fk" FOREIGN KEY ("patch_request_id") REFERENCES "public"."patch_requests"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "patch_request_findings" ADD CONSTRAINT "patch_request_findings_patch_request_id_patch_requests_id_fk" FOREIGN KEY ("patch_request_id") REFERENCES "public"."patch_requests"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "patch_request_findings" ADD CONSTRAINT "patch_request_findings_finding_id_findings_id_fk" FOREIGN KEY ("finding_id") REFERENCES "public"."findings"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD CONSTRAINT "patch_requests_run_id_pr_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."pr_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "patch_requests" ADD CONSTRAINT "patch_requests_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "findings" ADD CONSTRAINT "findings_run_id_pr_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."pr_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pr_runs" ADD CONSTRAINT "pr_runs_installation_id_installations_id_fk" FOREIGN KEY ("installation_id") REFERENCES "public"."installations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "plan_changes" ADD CONSTRAINT "plan_changes_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "token_events" ADD CONSTRAINT "token_events_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "token_events" ADD CONSTRAINT "token_events_patch_request_id_patch_requests_id_fk" FOREIGN KEY ("patch_request_id") REFERENCES "public"."patch_requests"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "token_reservations" ADD CONSTRAINT "token_reservations_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_api_keys" ADD CONSTRAINT "user_api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "installations_user_id_index" ON "installations" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "patch_request_findings_finding_id_index" ON "patch_request_findings" USING btree ("finding_id");--> statement-breakpoint
CREATE INDEX "patch_requests_user_id_index" ON "patch_requests" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "patch_requests_run_id_index" ON "patch_requests" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "pr_runs_installation_id_index" ON "pr_runs" USING btree ("installation_id");--> statement-breakpoint
CREATE INDEX "pr_runs_repository_pr_number_index" ON "pr_runs" USING btree ("repository","pr_number");--> statement-breakpoint
CREATE INDEX "plan_changes_user_id_index" ON "plan_changes" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "token_events_user_id_created_at_index" ON "token_events" USING btree ("user_id","created_at");--> statement-breakpoint
CREATE INDEX "token_events_patch_request_id_index" ON "token_events" USING btree ("patch_request_id");--> statement-breakpoint
CREATE INDEX "token_reservations_expires_at_index" ON "token_reservations" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "token_reservations_user_id_index" ON "token_reservations" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "api_tokens_user_id_index" ON "api_tokens" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "user_api_keys_master_key_version_index" ON "user_api_keys" USING btree ("master_key_version");