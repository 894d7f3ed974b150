ALTER TABLE "patch_files" ADD COLUMN "restored_generation" integer;--> statement-breakpoint
ALTER TABLE "patch_files" ADD COLUMN "kept_result" jsonb;--> statement-breakpoint
ALTER TABLE "patch_files" ADD COLUMN "regeneration_error" text;