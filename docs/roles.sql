-- roles.sql - the two PostgreSQL roles datapipe needs, with what each needs and nothing more
-- (README, "Privileges"): the loader's owns the schema (it creates and evolves the tables in
-- it and nothing outside); the server's may only read that schema's tables, today's and those
-- the loader creates later. Run once as a superuser (or a role with CREATEROLE that owns the
-- database), then give each role a password (\password ROLE) or a client certificate:
--   psql -v schema=datapipe -v loader=datapipe_loader -v reader=datapipe_reader -f roles.sql
CREATE ROLE :"loader" LOGIN;
CREATE ROLE :"reader" LOGIN;
-- Owning the schema is the loader's only privilege beyond CONNECT and TEMPORARY on the
-- database, which PUBLIC has by default (temporary tables stage upserts and repeated keys).
CREATE SCHEMA :"schema" AUTHORIZATION :"loader";
GRANT USAGE ON SCHEMA :"schema" TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"loader" IN SCHEMA :"schema"
    GRANT SELECT ON TABLES TO :"reader";
-- Belt and braces: the server's sessions refuse writes even should a grant be added by mistake.
ALTER ROLE :"reader" SET default_transaction_read_only = on;
