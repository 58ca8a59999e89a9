# The Key Vault LiveOps reads its secrets from (through the Secrets Store CSI driver and the
# workload identity). RBAC authorization, soft delete with purge protection, default-deny
# firewall, private endpoint. Secrets: hmac-keys (generated here), db-url, redis-url, bus-conn,
# and the Application Gateway's TLS certificate.

data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "this" {
  name                          = var.name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = var.sku_name
  rbac_authorization_enabled    = true
  soft_delete_retention_days    = 90
  purge_protection_enabled      = true
  public_network_access_enabled = var.public_network_access_enabled
  tags                          = var.tags

  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = var.allowed_ip_ranges
  }
}

resource "azurerm_private_endpoint" "this" {
  name                = "${var.name}-pe"
  location            = var.location
  resource_group_name = var.resource_group_name
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "${var.name}-psc"
    private_connection_resource_id = azurerm_key_vault.this.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "keyvault"
    private_dns_zone_ids = [var.private_dns_zone_id]
  }
}

# Terraform itself writes the secrets and the certificate.
resource "azurerm_role_assignment" "deployer_secrets" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "deployer_certificates" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Certificates Officer"
  principal_id         = data.azurerm_client_config.current.object_id
}

resource "azurerm_role_assignment" "secret_readers" {
  for_each = var.secret_reader_principal_ids

  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = each.value
  principal_type       = "ServicePrincipal"
}

# The expiry date moves forward once it has passed (time_rotating is replaced on the next apply).
resource "time_rotating" "secret_expiry" {
  rotation_days = var.secret_expiry_days
}

# HMAC signing key of the gateway and receipts, in the HMAC_KEYS format "kid=secret". Rotate by
# adding a key id (a second random_password) and listing both until clients moved over.
resource "random_password" "hmac_k1" {
  length  = 48
  special = false
}

locals {
  secrets = {
    "hmac-keys" = { value = "k1=${random_password.hmac_k1.result}", content_type = "text/plain; format=kid=secret[,kid=secret]" }
    "db-url"    = { value = var.db_url, content_type = "text/uri-list" }
    "redis-url" = { value = var.redis_url, content_type = "text/uri-list" }
    "bus-conn"  = { value = var.bus_conn, content_type = "text/plain; format=servicebus-connection-string" }
  }
}

resource "azurerm_key_vault_secret" "liveops" {
  for_each = toset(["hmac-keys", "db-url", "redis-url", "bus-conn"])

  name            = each.key
  value           = local.secrets[each.key].value
  content_type    = local.secrets[each.key].content_type
  key_vault_id    = azurerm_key_vault.this.id
  expiration_date = time_rotating.secret_expiry.rotation_rfc3339
  tags            = var.tags

  depends_on = [azurerm_role_assignment.deployer_secrets, azurerm_private_endpoint.this]
}

resource "azurerm_key_vault_secret" "extra" {
  for_each = nonsensitive(toset(keys(var.extra_secrets)))

  name            = each.key
  value           = var.extra_secrets[each.key]
  content_type    = "text/plain"
  key_vault_id    = azurerm_key_vault.this.id
  expiration_date = time_rotating.secret_expiry.rotation_rfc3339
  tags            = var.tags

  depends_on = [azurerm_role_assignment.deployer_secrets, azurerm_private_endpoint.this]
}

resource "azurerm_key_vault_certificate" "gateway" {
  name         = "gateway-tls"
  key_vault_id = azurerm_key_vault.this.id
  tags         = var.tags

  certificate_policy {
    issuer_parameters {
      name = var.gateway_certificate.issuer_name
    }

    key_properties {
      exportable = true
      key_type   = "RSA"
      key_size   = 2048
      reuse_key  = false
    }

    lifetime_action {
      action {
        action_type = "AutoRenew"
      }
      trigger {
        days_before_expiry = 30
      }
    }

    secret_properties {
      content_type = "application/x-pkcs12"
    }

    x509_certificate_properties {
      subject            = var.gateway_certificate.subject
      validity_in_months = 12
      key_usage          = ["digitalSignature", "keyEncipherment"]
      extended_key_usage = ["1.3.6.1.5.5.7.3.1"]

      subject_alternative_names {
        dns_names = var.gateway_certificate.dns_names
      }
    }
  }

  depends_on = [azurerm_role_assignment.deployer_certificates, azurerm_private_endpoint.this]
}
