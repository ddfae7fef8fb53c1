-- Sample destination database (captured) and the auxiliary database hooks write into (never captured).
CREATE DATABASE IF NOT EXISTS inventory;
CREATE DATABASE IF NOT EXISTS sidecar_aux;

CREATE USER IF NOT EXISTS 'cdc'@'127.0.0.1' IDENTIFIED BY 'cdc';
CREATE USER IF NOT EXISTS 'cdc'@'localhost' IDENTIFIED BY 'cdc';
GRANT SELECT, RELOAD, SHOW DATABASES, LOCK TABLES, REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR
  ON *.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost';
GRANT ALL ON inventory.* TO 'cdc'@'127.0.0.1', 'cdc'@'localhost';

CREATE USER IF NOT EXISTS 'sidecar'@'127.0.0.1' IDENTIFIED BY 'sidecar-demo-pw';
CREATE USER IF NOT EXISTS 'sidecar'@'localhost' IDENTIFIED BY 'sidecar-demo-pw';
GRANT ALL ON sidecar_aux.* TO 'sidecar'@'127.0.0.1', 'sidecar'@'localhost';
GRANT SELECT ON inventory.* TO 'sidecar'@'127.0.0.1', 'sidecar'@'localhost';
FLUSH PRIVILEGES;

USE inventory;
CREATE TABLE IF NOT EXISTS products (
  id          BIGINT PRIMARY KEY,
  sku         VARCHAR(64) NOT NULL,
  name        VARCHAR(255) NOT NULL,
  price       DECIMAL(12,2) NOT NULL,
  created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS stock_movements (
  id          BIGINT PRIMARY KEY,
  product_id  BIGINT NOT NULL,
  quantity    INT NOT NULL,
  moved_at    DATETIME(3) NOT NULL
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS type_zoo (
  id          BIGINT PRIMARY KEY,
  c_decimal   DECIMAL(20,6),
  c_float     FLOAT,
  c_double    DOUBLE,
  c_date      DATE,
  c_time      TIME(6),
  c_datetime  DATETIME(6),
  c_timestamp TIMESTAMP(6) NULL,
  c_year      YEAR,
  c_enum      ENUM('small','medium','large'),
  c_set       SET('red','green','blue'),
  c_bit       BIT(12),
  c_blob      BLOB,
  c_json      JSON,
  c_text      TEXT,
  c_bool      BOOLEAN,
  c_uuid      UUID
) ENGINE=InnoDB;

-- Example hooks write here. The connectors include only `inventory`, so these rows make no events.
USE sidecar_aux;
CREATE TABLE IF NOT EXISTS pipeline_audit_log (
  event_id          CHAR(64) PRIMARY KEY,
  pipeline          VARCHAR(128) NOT NULL,
  destination_table VARCHAR(255) NOT NULL,
  source_table      VARCHAR(255) NULL,
  op                CHAR(1) NOT NULL,
  record_key        VARCHAR(255) NULL,
  committed_at      DATETIME(6) NULL,
  recorded_at       DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS pipeline_stats (
  pipeline          VARCHAR(128) NOT NULL,
  destination_table VARCHAR(255) NOT NULL,
  last_committed_at DATETIME(6) NULL,
  events            BIGINT NOT NULL DEFAULT 0,
  updated_at        DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (pipeline, destination_table)
) ENGINE=InnoDB;
-- ledger of applied record ids (sidecar.ledger; `checkpoint-sidecar ledger create` makes the same)
CREATE TABLE IF NOT EXISTS checkpoint_ledger (
  pipeline   VARCHAR(200) NOT NULL,
  hook       VARCHAR(200) NOT NULL,
  id         VARCHAR(64) NOT NULL,
  applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (pipeline, hook, id),
  KEY checkpoint_ledger_applied_at (applied_at)
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS hook_calls (
  id           BIGINT AUTO_INCREMENT PRIMARY KEY,
  test_run     VARCHAR(64) NOT NULL,
  record_id    BIGINT NOT NULL,
  event_id     CHAR(64) NOT NULL,
  tbl          VARCHAR(255) NOT NULL,
  op           CHAR(1) NOT NULL,
  record_json  LONGTEXT NULL,
  pid          INT NULL,
  called_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  KEY (test_run, record_id)
) ENGINE=InnoDB;
