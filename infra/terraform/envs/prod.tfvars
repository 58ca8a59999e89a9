# Production: zone-redundant everything; Redis, PostgreSQL, Service Bus, Key Vault and the
# registry reachable only through private endpoints (public network access off); a private AKS
# API server; 3-15 application nodes. tests/check_structure.py holds these values to the
# production design (PROD_DESIGN). The operator's own inputs (subscription, principals, host
# names) go in prod.site.tfvars (see site.tfvars.example).
environment    = "prod"
name_prefix    = "liveops-prod"
address_space  = "10.40.0.0/16"
acr_name       = "liveopsacr"
key_vault_name = "liveops-prod-kv"

aks = {
  sku_tier        = "Standard"
  private_cluster = true
  system_pool     = { vm_size = "Standard_D4ds_v5", node_count = 3 }
  app_pool        = { vm_size = "Standard_D8ds_v5", min_count = 3, max_count = 15 }
}

gateway = { min_capacity = 3, max_capacity = 20 }

registry_sku = "Premium"

key_vault = {
  sku_name                      = "premium"
  secret_expiry_days            = 180
  public_network_access_enabled = false
}

redis = {
  sku_name             = "Premium"
  capacity             = 2
  replicas_per_primary = 2
  persistence          = "aof"
}

postgres = {
  sku_name              = "GP_Standard_D4ds_v5"
  storage_mb            = 262144
  high_availability     = true
  backup_retention_days = 35
  geo_redundant_backup  = true
  read_replica          = true
}

servicebus = {
  sku                          = "Premium"
  capacity                     = 2
  premium_messaging_partitions = 2
}

mysql = {
  vm_size              = "Standard_D4ds_v5"
  disk_type            = "Premium_LRS"
  data_disk_size_gb    = 512
  backup_disk_size_gb  = 256
  azure_backup_enabled = true
}

monitoring = {
  log_retention_days = 90
  grafana_enabled    = true
  zone_redundant     = true
  # The split targets on PostgreSQL and Service Bus keep no local files, so no process backs up
  # and backup_last_success_timestamp_seconds is always absent: LiveOpsBackupMissing would fire
  # for ever (docs/OPERATIONS.md, "Backup age"). The managed backups of the stores stand in.
  prometheus_alerts_disabled = ["LiveOpsBackupMissing"]
}
