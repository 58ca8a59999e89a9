# The Key Vault LiveOps reads its secrets from (through the Secrets Store CSI driver and the
# workload identity). RBAC authorization, soft delete with purge protection, default-deny
# firewall, private endpoint (network.tf). Secrets: hmac-keys and secrets-keys (generated
# here), db-url, redis-url, bus-conn, db-read-url (with a PostgreSQL read replica), the MySQL
# VM's password and TLS (mysql-ca, which the pods mount too, mysql-server-cert,
# mysql-server-key), and the Application Gateway's TLS certificate.

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_189:Public network access is off in prod (tests/check_structure.py holds prod to it); dev keeps a default-deny public endpoint open only to the Terraform runner, so it can be applied from outside the VNet.
  name                          = var.key_vault.name
  location                      = var.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = var.key_vault.sku_name
  rbac_authorization_enabled    = true
  soft_delete_retention_days    = 90
  purge_protection_enabled      = true
  public_network_access_enabled = var.key_vault.public_network_access_enabled
  tags                          = local.tags

  network_acls {
    default_action = "Deny"
    bypass         = "AzureServices"
    ip_rules       = var.key_vault.allowed_ip_ranges
  }
}

# Terraform itself writes the secrets and the certificate.
resource "azurerm_role_assignment" "deployer" {
  for_each = toset(["Key Vault Secrets Officer", "Key Vault Certificates Officer"])

  scope                = azurerm_key_vault.this.id
  role_definition_name = each.value
  principal_id         = data.azurerm_client_config.current.object_id
}

# The workloads, the gateway (its certificate) and the MySQL VM (its password) read secrets.
resource "azurerm_role_assignment" "secret_readers" {
  for_each = toset(["liveops-workload", "appgw", "mysql-vm"])

  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets User"
  principal_id         = azurerm_user_assigned_identity.this[each.key].principal_id
  principal_type       = "ServicePrincipal"
}

# The expiry date moves forward once it has passed (time_rotating is replaced on the next apply).
resource "time_rotating" "secret_expiry" {
  rotation_days = var.key_vault.secret_expiry_days
}

# HMAC signing key of the gateway and receipts, in the HMAC_KEYS format "kid=secret". Rotate by
# adding a key id (a second random_password) and listing both until clients moved over.
resource "random_password" "hmac_k1" {
  length  = 48
  special = false
}

# The key material that seals secrets at rest (API keys' and webhooks' secrets, draw seeds, keyed
# operator answers), in the SECRETS_KEYS_FILE format "kid=material". Losing it makes every sealed value unreadable (backups
# included): never taint or replace it. Rotate in three versions (pods re-read the file, no
# rollout): a new key id after k1, then put first, then k1 dropped once every pod seals with it
# and secrets_stale is 0 (docs/OPERATIONS.md, "Secrets at rest").
resource "random_password" "secrets_k1" {
  length  = 48
  special = false
}

locals {
  # db-read-url (DB_READ_URL of the targets that read from a replica) exists only where the
  # replica does and db-url is PostgreSQL: a replica must be of the DB_URL server's kind.
  read_replica_url = var.postgres.read_replica && var.repository_backend == "postgres"

  # The secrets LiveOps reads (the objects of the SecretProviderClass), with their content types.
  liveops_secrets = merge({
    "hmac-keys"                       = "text/plain; format=kid=secret[,kid=secret]"
    "secrets-keys"                    = "text/plain; format=kid=material[,kid=material]"
    "db-url"                          = "text/uri-list"
    "redis-url"                       = "text/uri-list"
    "bus-conn"                        = "text/plain; format=servicebus-connection-string"
    (local.mysql.tls_secret_names.ca) = "application/x-pem-file"
  }, local.read_replica_url ? { "db-read-url" = "text/uri-list" } : {})

  # db-url points at PostgreSQL, or at the MySQL VM with repository_backend = "mysql".
  secret_values = merge({
    "hmac-keys"                         = "k1=${random_password.hmac_k1.result}"
    "secrets-keys"                      = "k1=${random_password.secrets_k1.result}"
    "db-url"                            = var.repository_backend == "postgres" ? local.postgres_url : local.mysql_url
    "redis-url"                         = local.redis_url
    "bus-conn"                          = azurerm_servicebus_namespace_authorization_rule.liveops.primary_connection_string
    (local.mysql.secret_name)           = random_password.mysql_liveops.result
    (local.mysql.tls_secret_names.ca)   = tls_self_signed_cert.mysql_ca.cert_pem
    (local.mysql.tls_secret_names.cert) = tls_locally_signed_cert.mysql_server.cert_pem
    (local.mysql.tls_secret_names.key)  = tls_private_key.mysql["server"].private_key_pem
  }, local.read_replica_url ? { "db-read-url" = local.postgres_read_url } : {})
}

resource "azurerm_key_vault_secret" "this" {
  for_each = toset(keys(local.secret_values))

  name            = each.key
  value           = local.secret_values[each.key]
  content_type    = lookup(local.liveops_secrets, each.key, "text/plain")
  key_vault_id    = azurerm_key_vault.this.id
  expiration_date = time_rotating.secret_expiry.rotation_rfc3339
  tags            = local.tags

  depends_on = [azurerm_role_assignment.deployer, azurerm_private_endpoint.this]
}

resource "azurerm_key_vault_certificate" "gateway" {
  name         = "gateway-tls"
  key_vault_id = azurerm_key_vault.this.id
  tags         = local.tags

  certificate_policy {
    issuer_parameters {
      name = var.gateway.certificate_issuer
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
      subject            = "CN=${var.gateway.hostnames[0]}"
      validity_in_months = 12
      key_usage          = ["digitalSignature", "keyEncipherment"]
      extended_key_usage = ["1.3.6.1.5.5.7.3.1"]

      subject_alternative_names {
        dns_names = var.gateway.hostnames
      }
    }
  }

  depends_on = [azurerm_role_assignment.deployer, azurerm_private_endpoint.this]
}
