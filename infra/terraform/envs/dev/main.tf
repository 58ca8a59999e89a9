# Development: the same shape as prod, small and cheap. Standard SKUs where Azure allows
# (registry, Redis, Service Bus), burstable PostgreSQL without HA, one system node and 1-3
# application nodes, a public API server limited to known addresses, no managed Grafana. Redis,
# PostgreSQL and Key Vault still sit behind private endpoints; Standard Service Bus and the
# registry have none (Premium only). What it is made of is modules/stack; this is its size.

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

  environment        = "dev"
  name_prefix        = var.name_prefix
  location           = var.location
  tags               = var.tags
  repository_backend = var.repository_backend

  network = {
    address_space  = var.address_space
    admin_ssh_cidr = var.admin_ssh_cidr
  }

  aks = {
    kubernetes_version       = var.kubernetes_version
    sku_tier                 = "Free"
    private_cluster          = false
    api_authorized_ip_ranges = var.api_authorized_ip_ranges
    admin_group_object_ids   = var.aks_admin_group_object_ids
    system_pool              = { vm_size = "Standard_D2ds_v5", node_count = 1 }
    app_pool                 = { vm_size = "Standard_D4ds_v5", min_count = 1, max_count = 3 }
  }

  # A self-signed certificate.
  gateway = {
    hostnames          = var.gateway_hostnames
    certificate_issuer = "Self"
    min_capacity       = 0
    max_capacity       = 2
  }

  registry = {
    name              = var.acr_name
    sku               = "Standard"
    push_principal_id = var.ci_principal_object_id
  }

  # The vault keeps a public endpoint, default deny, open to the Terraform runner and developers.
  key_vault = {
    name                          = var.key_vault_name
    sku_name                      = "standard"
    secret_expiry_days            = 90
    public_network_access_enabled = true
    allowed_ip_ranges             = var.terraform_runner_ip_ranges
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

  servicebus = {
    sku = "Standard"
  }

  mysql = {
    vm_size              = "Standard_B2s"
    admin_ssh_public_key = var.mysql_admin_ssh_public_key
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
}
