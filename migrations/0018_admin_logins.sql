CREATE TABLE "admin_logins" (
	"login" text PRIMARY KEY NOT NULL,
	"github_id" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
