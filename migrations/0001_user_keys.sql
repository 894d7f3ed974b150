ALTER TABLE "users" ADD COLUMN "provider_order" text[] DEFAULT '{"groq","gemini"}' NOT NULL;--> statement-breakpoint
ALTER TABLE "user_api_keys" ADD COLUMN "unusable_cause" text;