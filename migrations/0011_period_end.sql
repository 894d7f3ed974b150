ALTER TABLE "users" ADD COLUMN "period_ends_at" timestamp with time zone DEFAULT now() NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "period_end_billing_period" text DEFAULT '' NOT NULL;--> statement-breakpoint
CREATE INDEX "users_period_end_idx" ON "users" USING btree ("period_end_billing_period","period_ends_at");