-- Runs once, when the PostgreSQL volume is first initialised: a database for the HAPI FHIR server
-- beside vcf-cds's own (POSTGRES_DB). Same cluster, separate databases.
CREATE DATABASE hapi OWNER vcfcds;
