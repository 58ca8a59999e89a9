# Azure Cache for Redis: hot state (idempotency, rate windows, blocks) and the leaderboards'
# sorted sets. TLS 1.2 only on 6380, non-TLS port off, public access off (private endpoint),
# Premium with replicas across zones and persistence to a storage account it writes with its
# managed identity. Azure accepts AOF or RDB persistence, not both at once: var.redis.persistence
# picks (RDB: an hourly snapshot).

locals {
  redis_premium     = var.redis.sku_name == "Premium"
  redis_storage_url = var.redis.persistence != "none" ? "BlobEndpoint=${azurerm_storage_account.redis_persistence[0].primary_blob_endpoint}" : null
  # REDIS_URL of LiveOps (secret redis-url): rediss:// (TLS) with the primary access key.
  redis_url = "rediss://:${urlencode(azurerm_redis_cache.this.primary_access_key)}@${azurerm_redis_cache.this.hostname}:${azurerm_redis_cache.this.ssl_port}/0"
}

resource "azurerm_storage_account" "redis_persistence" {
  count = var.redis.persistence != "none" ? 1 : 0

  #checkov:skip=CKV_AZURE_33:Queue service logging: the account holds only Redis persistence blobs, no queues.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys are not required by the design; blobs are encrypted with platform keys (and infrastructure encryption).
  #checkov:skip=CKV2_AZURE_38:Soft delete is left off on purpose: Azure warns that soft delete with Redis persistence causes very high storage costs (every AOF rewrite is kept).
  #checkov:skip=CKV_AZURE_59:Only Redis writes here, as a trusted Azure service with its managed identity through the firewall bypass; the firewall denies everything else and shared keys are off.
  #checkov:skip=CKV2_AZURE_33:Nothing in the virtual network reads the persistence files; Redis reaches the account over Azure's backbone as a trusted service, so a private endpoint would serve no client.
  #checkov:skip=CKV_AZURE_206:Redis persistence files are rebuilt continuously; zone-redundant storage (ZRS) is enough, geo replication would only add cost.
  name                       = substr(replace("${var.name_prefix}redis", "-", ""), 0, 24)
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  account_tier               = "Standard"
  account_replication_type   = "ZRS"
  account_kind               = "StorageV2"
  min_tls_version            = "TLS1_2"
  https_traffic_only_enabled = true
  shared_access_key_enabled  = false
  # Redis is a trusted Azure service that reaches the account through the firewall's AzureServices
  # bypass with its managed identity; nothing else gets in (default deny, no shared keys).
  public_network_access_enabled     = true
  allow_nested_items_to_be_public   = false
  infrastructure_encryption_enabled = true
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  tags                              = local.tags

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  sas_policy {
    expiration_period = "0.01:00:00"
  }
}

resource "azurerm_redis_cache" "this" {
  name                          = "${var.name_prefix}-redis"
  location                      = var.location
  resource_group_name           = azurerm_resource_group.this.name
  sku_name                      = var.redis.sku_name
  family                        = local.redis_premium ? "P" : "C"
  capacity                      = var.redis.capacity
  redis_version                 = "6"
  minimum_tls_version           = "1.2"
  non_ssl_port_enabled          = false
  public_network_access_enabled = false
  zones                         = local.redis_premium ? ["1", "2", "3"] : null
  replicas_per_primary          = local.redis_premium ? var.redis.replicas_per_primary : null
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }

  redis_configuration {
    # LiveOps keys expire on their own (idempotency, windows, blocks); ranks have no TTL, so
    # eviction must never pick them: evict only keys that carry a TTL.
    maxmemory_policy                        = "volatile-lru"
    authentication_enabled                  = true
    data_persistence_authentication_method  = var.redis.persistence != "none" ? "ManagedIdentity" : null
    aof_backup_enabled                      = local.redis_premium ? var.redis.persistence == "aof" : null
    aof_storage_connection_string_0         = var.redis.persistence == "aof" ? local.redis_storage_url : null
    rdb_backup_enabled                      = local.redis_premium ? var.redis.persistence == "rdb" : null
    rdb_backup_frequency                    = var.redis.persistence == "rdb" ? 60 : null
    rdb_backup_max_snapshot_count           = var.redis.persistence == "rdb" ? 1 : null
    rdb_storage_connection_string           = var.redis.persistence == "rdb" ? local.redis_storage_url : null
    active_directory_authentication_enabled = false
  }
}

# The cache writes its persistence files with its system-assigned identity.
resource "azurerm_role_assignment" "redis_persistence" {
  count = var.redis.persistence != "none" ? 1 : 0

  scope                = azurerm_storage_account.redis_persistence[0].id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_redis_cache.this.identity[0].principal_id
  principal_type       = "ServicePrincipal"
}
