CREATE TABLE "platform_key_rejections" (
	"provider" text NOT NULL,
	"key_hash" text NOT NULL,
	"status" integer,
	"rejected_at" timestamp with time zone DEFAULT now() NOT NULL,
	"recheck_at" timestamp with time zone NOT NULL,
	CONSTRAINT "platform_key_rejections_provider_key_hash_pk" PRIMARY KEY("provider","key_hash")
);
