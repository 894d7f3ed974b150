DROP INDEX "findings_mask_version_index";--> statement-breakpoint
CREATE INDEX "findings_mask_version_index" ON "findings" USING btree ("mask_version") WHERE "mask_version" < 4;