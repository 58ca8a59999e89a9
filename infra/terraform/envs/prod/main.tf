# Production: zone-redundant everything; Redis, PostgreSQL, Service Bus, Key Vault and the
# registry reachable only through private endpoints (public network access off); a private AKS
# API server; 3-15 application nodes. What it is made of is modules/stack; this is its size.

terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = "~> 4.42" }
  }

  # Remote state in Azure Storage; the blob lease is the state lock. Settings come from
  # backend.hcl (see backend.hcl.example): terraform init -backend-config=backend.hcl
  backend "azurerm" {}
}

provider "azurerm" {
  subscription_id     = var.subscription_id
  storage_use_azuread = true

  features {
    key_vault {
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }

    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}

module "stack" {
  source = "../../modules/stack"

  environment        = "prod"
  name_prefix        = var.name_prefix
  location           = var.location
  tags               = var.tags
  repository_backend = var.repository_backend

  network = {
    address_space  = var.address_space
    admin_ssh_cidr = var.admin_ssh_cidr
  }

  aks = {
    kubernetes_version     = var.kubernetes_version
    sku_tier               = "Standard"
    private_cluster        = true
    admin_group_object_ids = var.aks_admin_group_object_ids
    system_pool            = { vm_size = "Standard_D4ds_v5", node_count = 3 }
    app_pool               = { vm_size = "Standard_D8ds_v5", min_count = 3, max_count = 15 }
  }

  gateway = {
    hostnames          = var.gateway_hostnames
    certificate_issuer = var.gateway_certificate_issuer
    min_capacity       = 3
    max_capacity       = 20
  }

  registry = {
    name              = var.acr_name
    sku               = "Premium"
    push_principal_id = var.ci_principal_object_id
  }

  key_vault = {
    name                          = var.key_vault_name
    sku_name                      = "premium"
    secret_expiry_days            = 180
    public_network_access_enabled = false
    allowed_ip_ranges             = var.terraform_runner_ip_ranges
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
    admin_ssh_public_key = var.mysql_admin_ssh_public_key
    disk_type            = "Premium_LRS"
    data_disk_size_gb    = 512
    backup_disk_size_gb  = 256
    azure_backup_enabled = true
  }

  monitoring = {
    log_retention_days       = 90
    grafana_enabled          = true
    grafana_admin_object_ids = var.grafana_admin_object_ids
    zone_redundant           = true
  }
}
