# The root of every environment: one configuration, applied once per environment with that
# environment's values (dev.tfvars, prod.tfvars: its size and names) and its own state (the
# backend key liveops-<env>.tfstate). What an environment is made of is modules/stack; the
# .tfvars say how large. See infra/terraform/README.md, "Applying an environment".

terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = "~> 4.42" }
    azapi   = { source = "Azure/azapi", version = "~> 2.0" }
  }

  # Remote state in Azure Storage; the blob lease is the state lock. Settings come from
  # backend.hcl (see backend.hcl.example) and the environment's key:
  #   terraform init -backend-config=backend.hcl -backend-config=key=liveops-<env>.tfstate
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

# Same subscription and credentials as azurerm (Azure CLI, or the ARM_* environment variables).
provider "azapi" {
  subscription_id = var.subscription_id
}

module "stack" {
  source = "../modules/stack"

  environment        = var.environment
  name_prefix        = var.name_prefix
  location           = var.location
  tags               = var.tags
  repository_backend = var.repository_backend

  network = {
    address_space  = var.address_space
    admin_ssh_cidr = var.admin_ssh_cidr
  }

  aks = merge(var.aks, {
    kubernetes_version       = var.kubernetes_version
    api_authorized_ip_ranges = var.api_authorized_ip_ranges
    admin_group_object_ids   = var.aks_admin_group_object_ids
  })

  gateway = merge(var.gateway, {
    hostnames          = var.gateway_hostnames
    certificate_issuer = var.gateway_certificate_issuer
  })

  registry = {
    name              = var.acr_name
    sku               = var.registry_sku
    push_principal_id = var.ci_principal_object_id
  }

  key_vault = merge(var.key_vault, {
    name              = var.key_vault_name
    allowed_ip_ranges = var.terraform_runner_ip_ranges
  })

  redis      = var.redis
  postgres   = var.postgres
  servicebus = var.servicebus

  mysql = merge(var.mysql, { admin_ssh_public_key = var.mysql_admin_ssh_public_key })

  monitoring = merge(var.monitoring, {
    grafana_admin_object_ids  = var.grafana_admin_object_ids
    grafana_editor_object_ids = [var.ci_principal_object_id]
    alert_email_addresses     = var.alert_email_addresses
    alert_pager_webhook_url   = var.alert_pager_webhook_url
  })
}
