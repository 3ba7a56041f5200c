--
-- PostgreSQL database dump
--

\restrict D8UTI3WNKdwQjtMp8ob7E4bBz9ybElDPPwEcxQvxLhyTiGZOI25Hb5Y9XhCoHWP

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
    idempotency_key text
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
    idempotency_key text
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
    idempotency_key text
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
    updated_at timestamp with time zone DEFAULT now() NOT NULL
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
    idempotency_key text
);


--
-- Name: dead_letter seq; Type: DEFAULT; Schema: upgrade_fixture; Owner: -
--

ALTER TABLE ONLY upgrade_fixture.dead_letter ALTER COLUMN seq SET DEFAULT nextval('upgrade_fixture.dead_letter_seq_seq'::regclass);


--
-- Data for Name: ad_event; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.ad_event (id, ip_address, user_agent, referring_url, advertiser_id, metadata, received_at, loaded_at, idempotency_key) FROM stdin;
\.


--
-- Data for Name: crash_report; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.crash_report (id, event_name, user_id, event_time, message, received_at, loaded_at, idempotency_key) FROM stdin;
01a24f20-ee37-731e-9cf1-59e280dafbb4	crash_report	11	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:11:27.927578+00	2026-12-07 06:11:28.191107+00	\N
01a24f20-ee4f-7379-9cb5-936cc5c142ad	crash_report	12	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:11:27.951541+00	2026-12-07 06:11:28.191107+00	\N
01a24f20-ee84-7771-b5cc-724d260f8b79	crash_report	13	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:11:28.004414+00	2026-12-07 06:11:28.191107+00	\N
01a24f20-ee95-7627-aaf5-77dac77faf6c	crash_report	14	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:11:28.021336+00	2026-12-07 06:11:28.191107+00	\N
01a24f20-eef0-7659-a35c-0b088e56ec3a	crash_report	19	1970-01-01 00:00:02+00	ok	2026-12-07 06:11:28.112741+00	2026-12-07 06:11:28.193333+00	\N
01a24f20-eea2-70f6-bf2d-4769681a9587	crash_report	15	2023-11-14 22:13:20+00	phase 1	2026-12-07 06:11:28.034204+00	2026-12-07 06:11:28.203577+00	\N
\.


--
-- Data for Name: data_sample; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.data_sample (id, time_stamp, n, mean, std, raw, received_at, loaded_at, idempotency_key) FROM stdin;
\.


--
-- Data for Name: dead_letter; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.dead_letter (seq, queue_id, event_type, stage, error, raw, received_at, failed_at, idempotency_key) FROM stdin;
1	upgrade-fixture	crash_report	ingest	user_id: expected integer, got string	\\x7b22757365725f6964223a20226e6f742d612d6e756d6265722d31222c202274696d657374616d70223a20322c20226d657373616765223a2022626164227d	2026-12-07 06:11:28.112741+00	2026-12-07 06:11:28.193333+00	\N
\.


--
-- Data for Name: loader_batches; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.loader_batches (queue_id, first_seq, last_seq, rows, loaded_at) FROM stdin;
upgrade-fixture	9	10	2	2026-12-07 06:11:28.193333+00
\.


--
-- Data for Name: product; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.product (id, doc, received_at, updated_at) FROM stdin;
\.


--
-- Data for Name: user_login; Type: TABLE DATA; Schema: upgrade_fixture; Owner: -
--

COPY upgrade_fixture.user_login (id, user_id, app_version, device_type, ip, locale, device_id, created_at, processed_at, received_at, idempotency_key) FROM stdin;
01a24f20-eeb4-719c-81bc-4e5e111c4f81	u-11	1.1	\N	\N	\N	\N	2023-11-14 22:13:20+00	2026-12-07 06:11:28.191146+00	2026-12-07 06:11:28.052864+00	login-1-1
01a24f20-eec1-7253-ab5a-61b54e6ebabf	u-12	1.2	\N	\N	\N	\N	2023-11-14 22:13:20+00	2026-12-07 06:11:28.191146+00	2026-12-07 06:11:28.065703+00	login-1-2
01a24f20-eed3-702e-b3a5-930c44d186f5	u-13	1.3	\N	\N	\N	\N	2023-11-14 22:13:20+00	2026-12-07 06:11:28.191146+00	2026-12-07 06:11:28.083493+00	login-1-3
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
-- Name: user_login_idempotency_key; Type: INDEX; Schema: upgrade_fixture; Owner: -
--

CREATE UNIQUE INDEX user_login_idempotency_key ON upgrade_fixture.user_login USING btree (idempotency_key) WHERE (idempotency_key IS NOT NULL);


--
-- PostgreSQL database dump complete
--

\unrestrict D8UTI3WNKdwQjtMp8ob7E4bBz9ybElDPPwEcxQvxLhyTiGZOI25Hb5Y9XhCoHWP

