ALTER TABLE "findings" ADD COLUMN "mask_version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
CREATE INDEX "findings_mask_version_index" ON "findings" USING btree ("mask_version");