# MySQL 8 on an Ubuntu 22.04 VM with no public address: TLS required, a liveops database and
# user, a dump every 15 minutes (mysqldump --single-transaction) to a backup disk and on to a
# blob container through azcopy with the VM's managed identity, node_exporter and
# mysqld_exporter for Prometheus. The LiveOps user's password is never in custom data: the VM
# reads it from Key Vault at boot with its identity.

resource "azurerm_user_assigned_identity" "vm" {
  name                = "${var.name_prefix}-mysql-vm"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags
}

# --- Backup storage: a blob container the VM writes with its identity, through a private
# endpoint; dumps are deleted after blob_backup_retention_days.
resource "azurerm_storage_account" "backup" {
  #checkov:skip=CKV_AZURE_33:Queue service logging: the account holds only MySQL dumps, no queues.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys are not required by the design; blobs are encrypted with platform keys and infrastructure encryption.
  name                              = substr(replace("${var.name_prefix}mysqlbk", "-", ""), 0, 24)
  location                          = var.location
  resource_group_name               = var.resource_group_name
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
  tags                              = var.tags

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

resource "azurerm_storage_container" "backup" {
  #checkov:skip=CKV2_AZURE_21:Blob reads, writes and deletes are logged by the diagnostic setting azurerm_monitor_diagnostic_setting.backup_blob to Log Analytics; the check only recognises the legacy Storage Insights.
  name                  = "mysql-backups"
  storage_account_id    = azurerm_storage_account.backup.id
  container_access_type = "private"
}

resource "azurerm_storage_management_policy" "backup" {
  storage_account_id = azurerm_storage_account.backup.id

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
        delete_after_days_since_modification_greater_than       = var.blob_backup_retention_days
      }
      version {
        delete_after_days_since_creation = 7
      }
    }
  }
}

resource "azurerm_monitor_diagnostic_setting" "backup_blob" {
  name                       = "blob-access"
  target_resource_id         = "${azurerm_storage_account.backup.id}/blobServices/default"
  log_analytics_workspace_id = var.log_analytics_workspace_id

  enabled_log {
    category = "StorageRead"
  }

  enabled_log {
    category = "StorageWrite"
  }

  enabled_log {
    category = "StorageDelete"
  }
}

resource "azurerm_private_endpoint" "backup" {
  name                = "${var.name_prefix}-mysqlbk-pe"
  location            = var.location
  resource_group_name = var.resource_group_name
  subnet_id           = var.private_endpoint_subnet_id
  tags                = var.tags

  private_service_connection {
    name                           = "${var.name_prefix}-mysqlbk-psc"
    private_connection_resource_id = azurerm_storage_account.backup.id
    subresource_names              = ["blob"]
    is_manual_connection           = false
  }

  private_dns_zone_group {
    name                 = "blob"
    private_dns_zone_ids = [var.blob_private_dns_zone_id]
  }
}

resource "azurerm_role_assignment" "vm_backup_writer" {
  scope                = azurerm_storage_container.backup.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.vm.principal_id
  principal_type       = "ServicePrincipal"
}

# --- The VM.
resource "azurerm_network_interface" "vm" {
  name                = "${var.name_prefix}-mysql-nic"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  ip_configuration {
    name                          = "internal"
    subnet_id                     = var.subnet_id
    private_ip_address_allocation = "Dynamic"
  }
}

resource "azurerm_linux_virtual_machine" "mysql" {
  #checkov:skip=CKV_AZURE_50:Extensions stay allowed for Azure Backup's snapshot extension and the Azure Monitor agent; custom scripts are not used (cloud-init does the set-up).
  name                            = "${var.name_prefix}-mysql"
  location                        = var.location
  resource_group_name             = var.resource_group_name
  size                            = var.vm_size
  zone                            = var.zone
  admin_username                  = var.admin_username
  disable_password_authentication = true
  network_interface_ids           = [azurerm_network_interface.vm.id]
  encryption_at_host_enabled      = true
  secure_boot_enabled             = true
  vtpm_enabled                    = true
  provision_vm_agent              = true
  allow_extension_operations      = true
  patch_mode                      = "AutomaticByPlatform"
  patch_assessment_mode           = "AutomaticByPlatform"
  tags                            = var.tags

  custom_data = base64encode(templatefile("${path.module}/cloud-init.yaml.tftpl", {
    identity_client_id      = azurerm_user_assigned_identity.vm.client_id
    key_vault_name          = var.key_vault_name
    password_secret_name    = var.password_secret_name
    database_name           = var.database_name
    database_user           = var.database_user
    storage_account         = azurerm_storage_account.backup.name
    container               = azurerm_storage_container.backup.name
    backup_interval_minutes = var.backup_interval_minutes
    local_retention_minutes = var.local_backup_retention_hours * 60
  }))

  admin_ssh_key {
    username   = var.admin_username
    public_key = var.admin_ssh_public_key
  }

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.vm.id]
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

resource "azurerm_managed_disk" "data" {
  #checkov:skip=CKV_AZURE_93:Customer-managed keys are not required by the design; the disk is encrypted with platform keys, and at host (encryption_at_host_enabled on the VM).
  name                 = "${var.name_prefix}-mysql-data"
  location             = var.location
  resource_group_name  = var.resource_group_name
  storage_account_type = var.disk_storage_account_type
  create_option        = "Empty"
  disk_size_gb         = var.data_disk_size_gb
  zone                 = var.zone
  # No SAS export or import of the disk.
  public_network_access_enabled = false
  network_access_policy         = "DenyAll"
  tags                          = var.tags
}

resource "azurerm_managed_disk" "backup" {
  #checkov:skip=CKV_AZURE_93:Customer-managed keys are not required by the design; the disk is encrypted with platform keys, and at host (encryption_at_host_enabled on the VM).
  name                 = "${var.name_prefix}-mysql-backup"
  location             = var.location
  resource_group_name  = var.resource_group_name
  storage_account_type = var.disk_storage_account_type
  create_option        = "Empty"
  disk_size_gb         = var.backup_disk_size_gb
  zone                 = var.zone
  # No SAS export or import of the disk.
  public_network_access_enabled = false
  network_access_policy         = "DenyAll"
  tags                          = var.tags
}

# LUN 0: MySQL data (/srv/mysql); LUN 1: dumps (/srv/mysql-backups). The set-up script waits
# for both, formats them on first boot and mounts them.
resource "azurerm_virtual_machine_data_disk_attachment" "data" {
  managed_disk_id    = azurerm_managed_disk.data.id
  virtual_machine_id = azurerm_linux_virtual_machine.mysql.id
  lun                = 0
  caching            = "ReadOnly"
}

resource "azurerm_virtual_machine_data_disk_attachment" "backup" {
  managed_disk_id    = azurerm_managed_disk.backup.id
  virtual_machine_id = azurerm_linux_virtual_machine.mysql.id
  lun                = 1
  caching            = "None"
}

# --- Optional: Azure Backup of the whole VM.
resource "azurerm_recovery_services_vault" "this" {
  count = var.azure_backup_enabled ? 1 : 0

  name                = "${var.name_prefix}-rsv"
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = "Standard"
  storage_mode_type   = "ZoneRedundant"
  soft_delete_enabled = true
  immutability        = "Unlocked"
  tags                = var.tags

  identity {
    type = "SystemAssigned"
  }
}

resource "azurerm_backup_policy_vm" "daily" {
  count = var.azure_backup_enabled ? 1 : 0

  name                = "${var.name_prefix}-mysql-daily"
  resource_group_name = var.resource_group_name
  recovery_vault_name = azurerm_recovery_services_vault.this[0].name
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
  count = var.azure_backup_enabled ? 1 : 0

  resource_group_name = var.resource_group_name
  recovery_vault_name = azurerm_recovery_services_vault.this[0].name
  source_vm_id        = azurerm_linux_virtual_machine.mysql.id
  backup_policy_id    = azurerm_backup_policy_vm.daily[0].id
}
