# MySQL 8 on an Ubuntu 22.04 VM with no public address: TLS required, a liveops database and
# user, a dump every 10 minutes (mysqldump --single-transaction) to a backup disk and on to a
# blob container through azcopy with the VM's managed identity, node_exporter and
# mysqld_exporter for Prometheus. The LiveOps user's password and the server's TLS key are never
# in custom data: the VM reads them from Key Vault with its identity (at boot, and the
# certificate daily).

locals {
  mysql = {
    zone           = "1"
    admin_username = "liveopsadmin"
    database       = "liveops"
    user           = "liveops"
    # The Key Vault secret the VM reads the LiveOps user's password from at boot.
    secret_name = "mysql-liveops-password"
    # The name the pods reach the VM by (the selector-less Service mysql of
    # deploy/k8s/components/redis-mysql-vm): the server certificate names it, and LiveOps
    # verifies it (ssl-mode=VERIFY_IDENTITY) against the CA of the secret mysql-ca.
    host = "mysql.${local.workload_namespace}.svc.cluster.local"
    # Key Vault secrets of the server's TLS: the CA (also mounted by the pods as mysql-ca), the
    # server certificate and its key (read by the VM only).
    tls_secret_names = { ca = "mysql-ca", cert = "mysql-server-cert", key = "mysql-server-key" }
    # A dump every 10 minutes (its age stays below the 15-minute RPO), kept 24 hours on the
    # backup disk and 35 days in blob storage.
    backup_interval_minutes      = 10
    local_backup_retention_hours = 24
    blob_backup_retention_days   = 35
    # LUN 0: MySQL data (/srv/mysql); LUN 1: dumps (/srv/mysql-backups). The set-up script waits
    # for both, formats them on first boot and mounts them.
    disks = {
      data   = { lun = 0, size_gb = var.mysql.data_disk_size_gb, caching = "ReadOnly" }
      backup = { lun = 1, size_gb = var.mysql.backup_disk_size_gb, caching = "None" }
    }
  }
  # DB_URL of LiveOps when repository_backend is mysql: the VM through its in-cluster name, its
  # certificate verified against the CA mounted from Key Vault (docs/DEPLOY.md, step 5).
  mysql_url = "mysql://${local.mysql.user}:${urlencode(random_password.mysql_liveops.result)}@${local.mysql.host}:3306/${local.mysql.database}?ssl-mode=VERIFY_IDENTITY&ssl-ca=/mnt/secrets-store/${local.mysql.tls_secret_names.ca}"
}

# --- TLS of the VM: a CA of the environment's own and a server certificate for local.mysql.host
# (MySQL's auto-generated certificate names no host, so VERIFY_IDENTITY could not pass). The VM
# reads the certificate and key from Key Vault (keyvault.tf) and reloads them daily, so a
# certificate renewed by an apply (early_renewal_hours) reaches it without a rebuild.
# The CA's key and the server's.
resource "tls_private_key" "mysql" {
  for_each = toset(["ca", "server"])

  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "mysql_ca" {
  private_key_pem       = tls_private_key.mysql["ca"].private_key_pem
  is_ca_certificate     = true
  validity_period_hours = 24 * 365 * 10
  allowed_uses          = ["cert_signing", "crl_signing"]

  subject {
    common_name  = "${var.name_prefix} MySQL CA"
    organization = "LiveOps"
  }
}

resource "tls_cert_request" "mysql_server" {
  private_key_pem = tls_private_key.mysql["server"].private_key_pem
  dns_names       = [local.mysql.host]

  subject {
    common_name  = local.mysql.host
    organization = "LiveOps"
  }
}

resource "tls_locally_signed_cert" "mysql_server" {
  cert_request_pem      = tls_cert_request.mysql_server.cert_request_pem
  ca_private_key_pem    = tls_private_key.mysql["ca"].private_key_pem
  ca_cert_pem           = tls_self_signed_cert.mysql_ca.cert_pem
  validity_period_hours = 24 * 365 * 2
  early_renewal_hours   = 24 * 60
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth"]
}

# The LiveOps user's password, stored in Key Vault (keyvault.tf), read from there by the VM.
resource "random_password" "mysql_liveops" {
  length  = 32
  special = false
}

# --- Backup storage: a blob container the VM writes with its identity, through a private
# endpoint (network.tf); dumps are deleted after local.mysql.blob_backup_retention_days.
resource "azurerm_storage_account" "mysql_backups" {
  #checkov:skip=CKV_AZURE_33:Queue service logging: the account holds only MySQL dumps, no queues.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys are not required by the design; blobs are encrypted with platform keys and infrastructure encryption.
  name                              = substr(replace("${var.name_prefix}mysqlbk", "-", ""), 0, 24)
  location                          = var.location
  resource_group_name               = azurerm_resource_group.this.name
  account_tier                      = "Standard"
  account_replication_type          = "GZRS"
  account_kind                      = "StorageV2"
  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  shared_access_key_enabled         = false
  public_network_access_enabled     = false
  allow_nested_items_to_be_public   = false
  infrastructure_encryption_enabled = true
  default_to_oauth_authentication   = true
  local_user_enabled                = false
  tags                              = local.tags

  blob_properties {
    versioning_enabled = true

    delete_retention_policy {
      days = 7
    }

    container_delete_retention_policy {
      days = 7
    }
  }

  network_rules {
    default_action = "Deny"
    bypass         = ["AzureServices"]
  }

  sas_policy {
    expiration_period = "0.01:00:00"
  }
}

resource "azurerm_storage_container" "mysql_backups" {
  #checkov:skip=CKV2_AZURE_21:Blob reads, writes and deletes are logged to Log Analytics by the diagnostic setting blob-access (monitoring.tf); the check only recognises the legacy Storage Insights.
  name                  = "mysql-backups"
  storage_account_id    = azurerm_storage_account.mysql_backups.id
  container_access_type = "private"
}

resource "azurerm_storage_management_policy" "mysql_backups" {
  storage_account_id = azurerm_storage_account.mysql_backups.id

  rule {
    name    = "expire-dumps"
    enabled = true

    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["mysql-backups/"]
    }

    actions {
      base_blob {
        tier_to_cool_after_days_since_modification_greater_than = 7
        delete_after_days_since_modification_greater_than       = local.mysql.blob_backup_retention_days
      }
      version {
        delete_after_days_since_creation = 7
      }
    }
  }
}

# --- The VM.
resource "azurerm_network_interface" "mysql" {
  name                = "${var.name_prefix}-mysql-nic"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags

  ip_configuration {
    name                          = "internal"
    subnet_id                     = azurerm_subnet.this["vm"].id
    private_ip_address_allocation = "Dynamic"
  }
}

resource "azurerm_linux_virtual_machine" "mysql" {
  #checkov:skip=CKV_AZURE_50:Extensions stay allowed for Azure Backup's snapshot extension and the Azure Monitor agent; custom scripts are not used (cloud-init does the set-up).
  name                            = "${var.name_prefix}-mysql"
  location                        = var.location
  resource_group_name             = azurerm_resource_group.this.name
  size                            = var.mysql.vm_size
  zone                            = local.mysql.zone
  admin_username                  = local.mysql.admin_username
  disable_password_authentication = true
  network_interface_ids           = [azurerm_network_interface.mysql.id]
  encryption_at_host_enabled      = true
  secure_boot_enabled             = true
  vtpm_enabled                    = true
  provision_vm_agent              = true
  allow_extension_operations      = true
  patch_mode                      = "AutomaticByPlatform"
  patch_assessment_mode           = "AutomaticByPlatform"
  tags                            = local.tags

  custom_data = base64encode(templatefile("${path.module}/mysql-cloud-init.yaml.tftpl", {
    identity_client_id      = azurerm_user_assigned_identity.this["mysql-vm"].client_id
    key_vault_name          = azurerm_key_vault.this.name
    password_secret_name    = local.mysql.secret_name
    tls_ca_secret_name      = local.mysql.tls_secret_names.ca
    tls_cert_secret_name    = local.mysql.tls_secret_names.cert
    tls_key_secret_name     = local.mysql.tls_secret_names.key
    database_name           = local.mysql.database
    database_user           = local.mysql.user
    storage_account         = azurerm_storage_account.mysql_backups.name
    container               = azurerm_storage_container.mysql_backups.name
    backup_interval_minutes = local.mysql.backup_interval_minutes
    local_retention_minutes = local.mysql.local_backup_retention_hours * 60
  }))

  admin_ssh_key {
    username   = local.mysql.admin_username
    public_key = var.mysql.admin_ssh_public_key
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.this["mysql-vm"].id]
  }

  os_disk {
    caching              = "ReadWrite"
    storage_account_type = "Premium_LRS"
    disk_size_gb         = 64
  }

  source_image_reference {
    publisher = "Canonical"
    offer     = "0001-com-ubuntu-server-jammy"
    sku       = "22_04-lts-gen2"
    version   = "latest"
  }

  boot_diagnostics {}

  lifecycle {
    # A new image version or an edited cloud-init must not rebuild the database server.
    ignore_changes = [source_image_reference, custom_data]
  }
}

resource "azurerm_managed_disk" "mysql" {
  #checkov:skip=CKV_AZURE_93:Customer-managed keys are not required by the design; the disks are encrypted with platform keys, and at host (encryption_at_host_enabled on the VM).
  for_each = local.mysql.disks

  name                 = "${var.name_prefix}-mysql-${each.key}"
  location             = var.location
  resource_group_name  = azurerm_resource_group.this.name
  storage_account_type = var.mysql.disk_type
  create_option        = "Empty"
  disk_size_gb         = each.value.size_gb
  zone                 = local.mysql.zone
  # No SAS export or import of the disks.
  public_network_access_enabled = false
  network_access_policy         = "DenyAll"
  tags                          = local.tags
}

resource "azurerm_virtual_machine_data_disk_attachment" "mysql" {
  for_each = local.mysql.disks

  managed_disk_id    = azurerm_managed_disk.mysql[each.key].id
  virtual_machine_id = azurerm_linux_virtual_machine.mysql.id
  lun                = each.value.lun
  caching            = each.value.caching
}

# --- Optional: Azure Backup of the whole VM.
resource "azurerm_recovery_services_vault" "mysql" {
  count = var.mysql.azure_backup_enabled ? 1 : 0

  name                = "${var.name_prefix}-rsv"
  location            = var.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = "Standard"
  storage_mode_type   = "ZoneRedundant"
  soft_delete_enabled = true
  immutability        = "Unlocked"
  tags                = local.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_backup_policy_vm" "mysql_daily" {
  count = var.mysql.azure_backup_enabled ? 1 : 0

  name                = "${var.name_prefix}-mysql-daily"
  resource_group_name = azurerm_resource_group.this.name
  recovery_vault_name = azurerm_recovery_services_vault.mysql[0].name
  timezone            = "UTC"

  backup {
    frequency = "Daily"
    time      = "02:00"
  }

  retention_daily {
    count = 14
  }
}

resource "azurerm_backup_protected_vm" "mysql" {
  count = var.mysql.azure_backup_enabled ? 1 : 0

  resource_group_name = azurerm_resource_group.this.name
  recovery_vault_name = azurerm_recovery_services_vault.mysql[0].name
  source_vm_id        = azurerm_linux_virtual_machine.mysql.id
  backup_policy_id    = azurerm_backup_policy_vm.mysql_daily[0].id
}

# The VM writes its dumps with its identity.
resource "azurerm_role_assignment" "mysql_backup_writer" {
  scope                = azurerm_storage_container.mysql_backups.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.this["mysql-vm"].principal_id
  principal_type       = "ServicePrincipal"
}
