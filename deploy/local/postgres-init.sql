-- Sample destination database of a pipeline: what Debezium captures and hooks react to.
CREATE ROLE cdc WITH LOGIN REPLICATION PASSWORD 'cdc';
CREATE ROLE sidecar WITH LOGIN PASSWORD 'sidecar-demo-pw';
CREATE DATABASE shop OWNER cdc;
\connect shop
SET ROLE cdc;
CREATE TABLE public.customers (
  id          bigint PRIMARY KEY,
  email       text NOT NULL,
  full_name   text,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.orders (
  id           bigint PRIMARY KEY,
  customer_id  bigint,
  amount       numeric(12,2) NOT NULL,
  status       text NOT NULL DEFAULT 'new',
  external_id  uuid NOT NULL DEFAULT gen_random_uuid(),
  details      jsonb,
  placed_on    date,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamp NOT NULL DEFAULT now()
);
-- Full before-images for updates and deletes.
ALTER TABLE public.customers REPLICA IDENTITY FULL;
ALTER TABLE public.orders REPLICA IDENTITY FULL;
-- A table of every type the decoder handles; its rows become the unit-test fixtures.
CREATE TABLE public.type_zoo (
  id            bigint PRIMARY KEY,
  c_numeric     numeric(20,6),
  c_numeric_var numeric,
  c_real        real,
  c_double      double precision,
  c_date        date,
  c_time        time,
  c_timetz      timetz,
  c_ts          timestamp,
  c_tstz        timestamptz,
  c_interval    interval,
  c_uuid        uuid,
  c_json        json,
  c_jsonb       jsonb,
  c_bytea       bytea,
  c_bits        bit varying(16),
  c_int_array   integer[],
  c_text_array  text[],
  c_bool        boolean,
  c_big_text    text
);
ALTER TABLE public.type_zoo REPLICA IDENTITY FULL;
-- Left at the default replica identity on purpose: updates carry no before, deletes only the key.
CREATE TABLE public.events_default_identity (id bigint PRIMARY KEY, note text);
-- Load and crash tests commit many rows here.
CREATE TABLE public.load_rows (id bigint PRIMARY KEY, batch int NOT NULL, payload text);
ALTER TABLE public.load_rows REPLICA IDENTITY FULL;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO sidecar;
RESET ROLE;
GRANT CONNECT ON DATABASE shop TO sidecar;
