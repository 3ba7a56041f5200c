--
-- PostgreSQL database dump
--

\restrict A2T9gRns6cO4Mq3wicyttSSflSn9NUPJgSShAvf1r3URhs7h9EF1PoVvux89RNs

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: upgrade_fixture; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA upgrade_fixture;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: ad_event; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.ad_event (
    id uuid NOT NULL,
    ip_address inet NOT NULL,
    user_agent text NOT NULL,
    referring_url text NOT NULL,
    advertiser_id text NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    received_at timestamp with time zone NOT NULL,
    loaded_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    source text
);


--
-- Name: crash_report; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.crash_report (
    id uuid NOT NULL,
    event_name text NOT NULL,
    user_id bigint NOT NULL,
    event_time timestamp with time zone NOT NULL,
    message text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    loaded_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    source text
);


--
-- Name: data_sample; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.data_sample (
    id uuid NOT NULL,
    time_stamp timestamp with time zone NOT NULL,
    n integer NOT NULL,
    mean double precision NOT NULL,
    std double precision NOT NULL,
    raw json NOT NULL,
    received_at timestamp with time zone NOT NULL,
    loaded_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    source text
);
ALTER TABLE ONLY upgrade_fixture.data_sample ALTER COLUMN raw SET COMPRESSION lz4;


--
-- Name: dead_letter; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.dead_letter (
    seq bigint NOT NULL,
    queue_id text NOT NULL,
    event_type text,
    stage text NOT NULL,
    error text NOT NULL,
    raw bytea NOT NULL,
    received_at timestamp with time zone,
    failed_at timestamp with time zone DEFAULT now() NOT NULL,
    idempotency_key text,
    source text,
    event_id uuid,
    replays integer DEFAULT 0 NOT NULL,
    replayed_at timestamp with time zone,
    CONSTRAINT dead_letter_stage_check CHECK ((stage = ANY (ARRAY['ingest'::text, 'load'::text])))
);


--
-- Name: dead_letter_seq_seq; Type: SEQUENCE; Schema: upgrade_fixture; Owner: -
--

CREATE SEQUENCE upgrade_fixture.dead_letter_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: dead_letter_seq_seq; Type: SEQUENCE OWNED BY; Schema: upgrade_fixture; Owner: -
--

ALTER SEQUENCE upgrade_fixture.dead_letter_seq_seq OWNED BY upgrade_fixture.dead_letter.seq;


--
-- Name: loader_batches; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.loader_batches (
    queue_id text NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    rows integer NOT NULL,
    loaded_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: product; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.product (
    id text NOT NULL,
    doc jsonb NOT NULL,
    received_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    source text
);


--
-- Name: queue_owners; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.queue_owners (
    queue_id text NOT NULL,
    instance_id text NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL,
    previous_instance_id text
);


--
-- Name: queue_watermarks; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.queue_watermarks (
    queue_id text NOT NULL,
    loaded_through timestamp with time zone NOT NULL
);


--
-- Name: user_login; Type: TABLE; Schema: upgrade_fixture; Owner: -
--

CREATE TABLE upgrade_fixture.user_login (
    id uuid NOT NULL,
    user_id text NOT NULL,
    app_version text,
    device_type text,
    ip inet,
    locale text,
    device_id text,
    created_at timestamp with time zone NOT NULL,
    processed_at timestamp with time zone NOT NULL,
    received_at timestamp with time zone NOT NULL,
    idempotency_key text,
    source text
);


--
-- Name: watermark; Type: VIEW; Schema: upgrade_fixture; Owner: -
--

CREATE VIEW upgrade_fixture.watermark AS
 SELECT queue_watermarks.queue_id,
    queue_watermarks.loaded_through
   FROM upgrade_fixture.queue_watermarks;


--
-- Name: dead_letter seq; Type: DEFAULT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.dead_letter ALTER COLUMN seq SET DEFAULT nextval('upgrade_fixture.dead_letter_seq_seq'::regclass);


--
-- Data for Name: ad_event; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.ad_event (id, ip_address, user_agent, referring_url, advertiser_id, metadata, received_at, loaded_at, idempotency_key, source) FROM stdin;
\.


--
-- Data for Name: crash_report; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.crash_report (id, event_name, user_id, event_time, message, received_at, loaded_at, idempotency_key, source) FROM stdin;
01a24f1f-9831-7019-a4ca-dd0671a2eb63	crash_report	11	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:10:00.369698+00	2026-12-07 06:10:00.774831+00	\N	\N
01a24f1f-984a-7293-ad9f-de06963fa035	crash_report	12	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:10:00.39455+00	2026-12-07 06:10:00.774831+00	\N	\N
01a24f1f-9866-755e-beca-9a59e96ef1b4	crash_report	13	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:10:00.422812+00	2026-12-07 06:10:00.774831+00	\N	\N
01a24f1f-9882-7718-8f41-b2922d995530	crash_report	14	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:10:00.450687+00	2026-12-07 06:10:00.774831+00	\N	\N
01a24f1f-98fa-705d-94e4-1ee4002f08b5	crash_report	19	1970-01-01 00:00:02+00	ok	2026-12-07 06:10:00.570309+00	2026-12-07 06:10:00.791332+00	\N	\N
01a24f1f-989b-7147-8bd2-d07d6d229464	crash_report	15	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:10:00.475898+00	2026-12-07 06:10:00.804341+00	\N	\N
\.


--
-- Data for Name: data_sample; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.data_sample (id, time_stamp, n, mean, std, raw, received_at, loaded_at, idempotency_key, source) FROM stdin;
\.


--
-- Data for Name: dead_letter; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.dead_letter (seq, queue_id, event_type, stage, error, raw, received_at, failed_at, idempotency_key, source, event_id, replays, replayed_at) FROM stdin;
1	upgrade-fixture	crash_report	ingest	user_id: expected integer, got string	\\x7b22757365725f6964223a20226e6f742d612d6e756d6265722d31222c202274696d657374616d70223a20322c20226d657373616765223a2022626164227d	2026-12-07 06:10:00.570309+00	2026-12-07 06:10:00.791332+00	\N	\N	01a24f1f-98fa-705d-94e4-1ee454ea2626	0	\N
\.


--
-- Data for Name: loader_batches; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.loader_batches (queue_id, first_seq, last_seq, rows, loaded_at) FROM stdin;
upgrade-fixture	9	10	2	2026-12-07 06:10:00.791332+00
\.


--
-- Data for Name: product; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.product (id, doc, received_at, updated_at, source) FROM stdin;
\.


--
-- Data for Name: queue_owners; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.queue_owners (queue_id, instance_id, since, previous_instance_id) FROM stdin;
upgrade-fixture	8d616a258e4707966a412d38f3c897b7	2026-12-07 06:10:00.766925+00	\N
\.


--
-- Data for Name: queue_watermarks; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.queue_watermarks (queue_id, loaded_through) FROM stdin;
upgrade-fixture	2026-12-07 06:10:00.810059+00
\.


--
-- Data for Name: user_login; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.user_login (id, user_id, app_version, device_type, ip, locale, device_id, created_at, processed_at, received_at, idempotency_key, source) FROM stdin;
01a24f1f-98bc-7216-ab62-a9bb1e6e896d	u-11	1.1	\N	\N	\N	\N	2023-11-14 22:13:20+00	2026-12-07 06:10:00.772761+00	2026-12-07 06:10:00.508207+00	login-1-1	\N
01a24f1f-98d2-7148-8d48-4a912e3e00e0	u-12	1.2	\N	\N	\N	\N	2023-11-14 22:13:20+00	2026-12-07 06:10:00.772761+00	2026-12-07 06:10:00.530446+00	login-1-2	\N
01a24f1f-98e3-731b-b0b2-8f02f0ac4b25	u-13	1.3	\N	\N	\N	\N	2023-11-14 22:13:20+00	2026-12-07 06:10:00.772761+00	2026-12-07 06:10:00.547535+00	login-1-3	\N
\.


--
-- Name: dead_letter_seq_seq; Type: SEQUENCE SET; Schema: upgrade_fixture; Owner: -
--

SELECT pg_catalog.setval('upgrade_fixture.dead_letter_seq_seq', 1, true);


--
-- Name: ad_event ad_event_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.ad_event
    ADD CONSTRAINT ad_event_pkey PRIMARY KEY (id);


--
-- Name: crash_report crash_report_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.crash_report
    ADD CONSTRAINT crash_report_pkey PRIMARY KEY (id);


--
-- Name: data_sample data_sample_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.data_sample
    ADD CONSTRAINT data_sample_pkey PRIMARY KEY (id);


--
-- Name: dead_letter dead_letter_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.dead_letter
    ADD CONSTRAINT dead_letter_pkey PRIMARY KEY (seq);


--
-- Name: loader_batches loader_batches_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.loader_batches
    ADD CONSTRAINT loader_batches_pkey PRIMARY KEY (queue_id, first_seq);


--
-- Name: product product_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.product
    ADD CONSTRAINT product_pkey PRIMARY KEY (id);


--
-- Name: queue_owners queue_owners_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.queue_owners
    ADD CONSTRAINT queue_owners_pkey PRIMARY KEY (queue_id);


--
-- Name: queue_watermarks queue_watermarks_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.queue_watermarks
    ADD CONSTRAINT queue_watermarks_pkey PRIMARY KEY (queue_id);


--
-- Name: user_login user_login_pkey; Type: CONSTRAINT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.user_login
    ADD CONSTRAINT user_login_pkey PRIMARY KEY (id);


--
-- Name: ad_event_idempotency_key; Type: INDEX; Schema: upgrade_fixture; Owner: -
--

CREATE UNIQUE INDEX ad_event_idempotency_key ON upgrade_fixture.ad_event USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);


--
-- Name: crash_report_idempotency_key; Type: INDEX; Schema: upgrade_fixture; Owner: -
--

CREATE UNIQUE INDEX crash_report_idempotency_key ON upgrade_fixture.crash_report USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);


--
-- Name: data_sample_idempotency_key; Type: INDEX; Schema: upgrade_fixture; Owner: -
--

CREATE UNIQUE INDEX data_sample_idempotency_key ON upgrade_fixture.data_sample USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);


--
-- Name: dead_letter_event_id; Type: INDEX; Schema: upgrade_fixture; Owner: -
--

CREATE INDEX dead_letter_event_id ON upgrade_fixture.dead_letter USING btree (event_id);


--
-- Name: user_login_idempotency_key; Type: INDEX; Schema: upgrade_fixture; Owner: -
--

CREATE UNIQUE INDEX user_login_idempotency_key ON upgrade_fixture.user_login USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);


--
-- PostgreSQL database dump complete
--

\unrestrict A2T9gRns6cO4Mq3wicyttSSflSn9NUPJgSShAvf1r3URhs7h9EF1PoVvux89RNs

