# Production: zone-redundant everything, private endpoints for Redis, PostgreSQL, Service Bus,
# Key Vault and the registry (public network access off), a private AKS API server, 3-15
# application nodes.

locals {
  env  = "prod"
  tags = merge(var.tags, { env = local.env, app = "liveops", managed-by = "terraform" })
}

resource "azurerm_resource_group" "this" {
  name     = "${var.name_prefix}-rg"
  location = var.location
  tags     = local.tags
}

module "network" {
  source = "../../modules/network"

  name_prefix         = var.name_prefix
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = var.address_space
  admin_ssh_cidr      = var.admin_ssh_cidr
  tags                = local.tags
}

module "monitoring" {
  source = "../../modules/monitoring"

  name_prefix              = var.name_prefix
  location                 = var.location
  resource_group_name      = azurerm_resource_group.this.name
  log_retention_days       = 90
  grafana_enabled          = true
  grafana_admin_object_ids = var.grafana_admin_object_ids
  zone_redundant           = true
  aks_cluster_id           = module.aks.id
  tags                     = local.tags
}

module "acr" {
  source = "../../modules/acr"

  name                       = var.acr_name
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  sku                        = "Premium"
  private_endpoint_subnet_id = module.network.data_subnet_id
  private_dns_zone_id        = module.network.private_dns_zone_ids["acr"]
  untagged_retention_days    = 7
  tags                       = local.tags
}

# Jenkins pushes images with its service principal.
resource "azurerm_role_assignment" "ci_acr_push" {
  scope                = module.acr.id
  role_definition_name = "AcrPush"
  principal_id         = var.ci_principal_object_id
  principal_type       = "ServicePrincipal"
}

# The gateway reads its TLS certificate from Key Vault with this identity.
resource "azurerm_user_assigned_identity" "appgw" {
  name                = "${var.name_prefix}-appgw"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

module "appgw" {
  source = "../../modules/appgw"

  name_prefix                = var.name_prefix
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  subnet_id                  = module.network.appgw_subnet_id
  zones                      = ["1", "2", "3"]
  min_capacity               = 3
  max_capacity               = 20
  identity_id                = azurerm_user_assigned_identity.appgw.id
  certificate_secret_id      = module.keyvault.gateway_certificate_secret_id
  rate_limit_per_minute      = 100
  log_analytics_workspace_id = module.monitoring.log_analytics_workspace_id
  tags                       = local.tags
}

module "aks" {
  source = "../../modules/aks"

  name_prefix         = var.name_prefix
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  kubernetes_version  = var.kubernetes_version
  sku_tier            = "Standard"
  subnet_id           = module.network.aks_subnet_id
  zones               = ["1", "2", "3"]
  system_pool = {
    vm_size    = "Standard_D4ds_v5"
    node_count = 3
  }
  app_pool = {
    vm_size   = "Standard_D8ds_v5"
    min_count = 3
    max_count = 15
  }
  admin_group_object_ids        = var.aks_admin_group_object_ids
  private_cluster               = true
  acr_id                        = module.acr.id
  log_analytics_workspace_id    = module.monitoring.log_analytics_workspace_id
  application_gateway_id        = module.appgw.id
  application_gateway_subnet_id = module.network.appgw_subnet_id
  workload_namespace            = "liveops"
  workload_service_account      = "liveops"
  tags                          = local.tags
}

# AGIC reads the resource group and, because the gateway has a user-assigned identity, must be
# allowed to assign that identity whenever it rewrites the gateway.
resource "azurerm_role_assignment" "agic_reader" {
  scope                = azurerm_resource_group.this.id
  role_definition_name = "Reader"
  principal_id         = module.aks.agic_identity_object_id
  principal_type       = "ServicePrincipal"
}

resource "azurerm_role_assignment" "agic_identity_operator" {
  scope                = azurerm_user_assigned_identity.appgw.id
  role_definition_name = "Managed Identity Operator"
  principal_id         = module.aks.agic_identity_object_id
  principal_type       = "ServicePrincipal"
}

module "redis" {
  source = "../../modules/redis"

  name_prefix                = var.name_prefix
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  sku_name                   = "Premium"
  capacity                   = 2
  zones                      = ["1", "2", "3"]
  replicas_per_primary       = 2
  persistence                = "aof"
  private_endpoint_subnet_id = module.network.data_subnet_id
  private_dns_zone_id        = module.network.private_dns_zone_ids["redis"]
  tags                       = local.tags
}

module "postgres" {
  source = "../../modules/postgres"

  name_prefix                = var.name_prefix
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  sku_name                   = "GP_Standard_D4ds_v5"
  storage_mb                 = 262144
  zone                       = "1"
  high_availability          = true
  standby_zone               = "2"
  backup_retention_days      = 35
  geo_redundant_backup       = true
  read_replica               = true
  private_endpoint_subnet_id = module.network.data_subnet_id
  private_dns_zone_id        = module.network.private_dns_zone_ids["postgres"]
  tags                       = local.tags
}

module "servicebus" {
  source = "../../modules/servicebus"

  name_prefix                  = var.name_prefix
  location                     = var.location
  resource_group_name          = azurerm_resource_group.this.name
  sku                          = "Premium"
  capacity                     = 2
  premium_messaging_partitions = 2
  local_auth_enabled           = true
  workload_principal_id        = module.aks.workload_identity_principal_id
  private_endpoint_subnet_id   = module.network.data_subnet_id
  private_dns_zone_id          = module.network.private_dns_zone_ids["servicebus"]
  tags                         = local.tags
}

resource "random_password" "mysql_liveops" {
  length  = 32
  special = false
}

module "mysql" {
  source = "../../modules/vm-mysql"

  name_prefix                = var.name_prefix
  location                   = var.location
  resource_group_name        = azurerm_resource_group.this.name
  subnet_id                  = module.network.vm_subnet_id
  vm_size                    = "Standard_D4ds_v5"
  zone                       = "1"
  admin_ssh_public_key       = var.mysql_admin_ssh_public_key
  data_disk_size_gb          = 512
  backup_disk_size_gb        = 256
  key_vault_name             = module.keyvault.name
  password_secret_name       = "mysql-liveops-password"
  backup_interval_minutes    = 15
  private_endpoint_subnet_id = module.network.data_subnet_id
  blob_private_dns_zone_id   = module.network.private_dns_zone_ids["blob"]
  log_analytics_workspace_id = module.monitoring.log_analytics_workspace_id
  azure_backup_enabled       = true
  tags                       = local.tags
}

locals {
  mysql_url = "mysql://liveops:${random_password.mysql_liveops.result}@${module.mysql.private_ip}:3306/liveops?ssl-mode=required"
  db_url    = var.repository_backend == "postgres" ? module.postgres.url : local.mysql_url
}

module "keyvault" {
  source = "../../modules/keyvault"

  name                          = var.key_vault_name
  location                      = var.location
  resource_group_name           = azurerm_resource_group.this.name
  sku_name                      = "premium"
  private_endpoint_subnet_id    = module.network.data_subnet_id
  private_dns_zone_id           = module.network.private_dns_zone_ids["keyvault"]
  public_network_access_enabled = false
  allowed_ip_ranges             = var.terraform_runner_ip_ranges
  secret_reader_principal_ids = {
    workload   = module.aks.workload_identity_principal_id
    appgw      = azurerm_user_assigned_identity.appgw.principal_id
    "mysql-vm" = module.mysql.identity_principal_id
  }
  secret_expiry_days = 180
  db_url             = local.db_url
  redis_url          = module.redis.url
  bus_conn           = module.servicebus.connection_string
  extra_secrets = {
    "mysql-liveops-password" = random_password.mysql_liveops.result
  }
  gateway_certificate = {
    subject     = "CN=${var.gateway_hostnames[0]}"
    dns_names   = var.gateway_hostnames
    issuer_name = var.gateway_certificate_issuer
  }
  tags = local.tags
}
