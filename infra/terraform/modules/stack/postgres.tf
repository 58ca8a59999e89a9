# PostgreSQL Flexible Server: LiveOps' repository. Public access off, reached through a private
# endpoint (privatelink.postgres.database.azure.com, network.tf); TLS required; zone-redundant
# HA, 35 days of point-in-time restore, geo-redundant backups and a read replica in prod.

locals {
  # LiveOps connects with the server's administrator login (a dedicated server) until a
  # migration creates a least-privilege role.
  postgres = {
    administrator_login = "liveops"
    database            = "liveops"
    zone                = "1"
    standby_zone        = "2"
  }
  # DB_URL of LiveOps when repository_backend is postgres: TLS with the server's certificate
  # chain and host name verified against the image's system roots (Azure's server certificates
  # chain to public roots; docs/DEPLOY.md, step 5).
  postgres_tls = "sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt"
  postgres_url = "postgres://${local.postgres.administrator_login}:${urlencode(random_password.postgres_admin.result)}@${azurerm_postgresql_flexible_server.this.fqdn}:5432/${local.postgres.database}?${local.postgres_tls}"
  # DB_READ_URL of the targets that read from the replica (prod: postgres.read_replica); the
  # replica keeps the primary's administrator login and password.
  postgres_read_url = var.postgres.read_replica ? "postgres://${local.postgres.administrator_login}:${urlencode(random_password.postgres_admin.result)}@${azurerm_postgresql_flexible_server.replica[0].fqdn}:5432/${local.postgres.database}?${local.postgres_tls}" : ""
}

resource "random_password" "postgres_admin" {
  length      = 32
  special     = false
  min_upper   = 2
  min_lower   = 2
  min_numeric = 2
}

resource "azurerm_postgresql_flexible_server" "this" {
  #checkov:skip=CKV_AZURE_136:Geo-redundant backup follows var.postgres.geo_redundant_backup: on in prod; dev holds throw-away data and keeps local backups only.
  name                          = "${var.name_prefix}-pg"
  location                      = var.location
  resource_group_name           = azurerm_resource_group.this.name
  sku_name                      = var.postgres.sku_name
  version                       = "16"
  storage_mb                    = var.postgres.storage_mb
  auto_grow_enabled             = true
  zone                          = local.postgres.zone
  backup_retention_days         = var.postgres.backup_retention_days
  geo_redundant_backup_enabled  = var.postgres.geo_redundant_backup
  public_network_access_enabled = false
  administrator_login           = local.postgres.administrator_login
  administrator_password        = random_password.postgres_admin.result
  tags                          = local.tags

  authentication {
    password_auth_enabled         = true
    active_directory_auth_enabled = false
  }

  dynamic "high_availability" {
    for_each = var.postgres.high_availability ? [1] : []
    content {
      mode                      = "ZoneRedundant"
      standby_availability_zone = local.postgres.standby_zone
    }
  }
}

# TLS 1.2 or later required; checkpoints and connections logged; connection throttling on.
resource "azurerm_postgresql_flexible_server_configuration" "this" {
  for_each = {
    require_secure_transport     = "on"
    ssl_min_protocol_version     = "TLSv1.2"
    log_checkpoints              = "on"
    log_connections              = "on"
    "connection_throttle.enable" = "on"
  }

  name      = each.key
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = each.value
}

resource "azurerm_postgresql_flexible_server_database" "liveops" {
  name      = local.postgres.database
  server_id = azurerm_postgresql_flexible_server.this.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# Reads that may lag (reports, rebuilds); the replica has its own private endpoint (network.tf).
resource "azurerm_postgresql_flexible_server" "replica" {
  count = var.postgres.read_replica ? 1 : 0

  name                = "${var.name_prefix}-pg-replica"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  source_server_id    = azurerm_postgresql_flexible_server.this.id
  create_mode         = "Replica"
  # The same version, compute and storage as the primary, in the standby's zone.
  version                       = azurerm_postgresql_flexible_server.this.version
  sku_name                      = azurerm_postgresql_flexible_server.this.sku_name
  storage_mb                    = azurerm_postgresql_flexible_server.this.storage_mb
  auto_grow_enabled             = true
  zone                          = local.postgres.standby_zone
  public_network_access_enabled = false
  # Backups belong to the primary; a replica keeps none of its own.
  geo_redundant_backup_enabled = false
  tags                         = local.tags
}
