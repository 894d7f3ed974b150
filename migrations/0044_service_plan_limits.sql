CREATE TABLE "service_plan_limits" (
	"plan" text PRIMARY KEY NOT NULL,
	"token_limit" bigint NOT NULL,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "service_plan_limits_token_limit_valid" CHECK ("service_plan_limits"."token_limit" >= -1)
);
