CREATE TABLE "pull_request_closes" (
	"repository_id" bigint NOT NULL,
	"pr_number" integer NOT NULL,
	"closed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "pull_request_closes_repository_id_pr_number_pk" PRIMARY KEY("repository_id","pr_number")
);
