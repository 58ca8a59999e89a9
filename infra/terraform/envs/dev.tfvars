# Development: the same shape as prod, small and cheap. Standard SKUs where Azure allows
# (registry, Redis, Service Bus), burstable PostgreSQL without HA, one system node and 1-3
# application nodes, a public API server limited to known addresses (api_authorized_ip_ranges,
# in dev.site.tfvars), a self-signed gateway certificate, no managed Grafana. Redis, PostgreSQL
# and Key Vault still sit behind private endpoints; Standard Service Bus and the registry have
# none (Premium only). The vault keeps a public endpoint, default deny, open to the Terraform
# runner and developers (terraform_runner_ip_ranges).
environment                = "dev"
name_prefix                = "liveops-dev"
address_space              = "10.41.0.0/16"
acr_name                   = "liveopsdevacr"
key_vault_name             = "liveops-dev-kv"
gateway_hostnames          = ["dev.liveops.example.com"]
gateway_certificate_issuer = "Self"

aks = {
  sku_tier        = "Free"
  private_cluster = false
  system_pool     = { vm_size = "Standard_D2ds_v5", node_count = 1 }
  app_pool        = { vm_size = "Standard_D4ds_v5", min_count = 1, max_count = 3 }
}

gateway = { min_capacity = 0, max_capacity = 2 }

registry_sku = "Standard"

key_vault = {
  sku_name                      = "standard"
  secret_expiry_days            = 90
  public_network_access_enabled = true
}

redis = {
  sku_name    = "Standard"
  capacity    = 1
  persistence = "none"
}

postgres = {
  sku_name              = "B_Standard_B1ms"
  storage_mb            = 32768
  high_availability     = false
  backup_retention_days = 7
  geo_redundant_backup  = false
  read_replica          = false
}

servicebus = { sku = "Standard" }

mysql = {
  vm_size              = "Standard_B2s"
  disk_type            = "StandardSSD_LRS"
  data_disk_size_gb    = 64
  backup_disk_size_gb  = 32
  azure_backup_enabled = false
}

monitoring = {
  log_retention_days = 30
  grafana_enabled    = false
  zone_redundant     = false
}
