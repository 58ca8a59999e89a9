# Azure Service Bus: the bus of the cloud deployment (BUS_KIND=servicebus). Three topics as in the
# design (events.ingested -> fairness -> events.accepted -> progression, leaderboard; flagged
# events quarantined in events.flagged), duplicate detection over 10 minutes (a gateway retry of
# the same eventId is dropped), sessions keyed by player so each player's events arrive in order,
# 10 deliveries before a message is dead-lettered. The Azure Monitor alerts on the namespace
# (backlog, stalled topics, dead letters, errors), which stand in for the bus_lag alerts on
# Service Bus, are in monitoring.tf.
#
# Authentication, decided: SAS stays on (local_auth_enabled = true) because LiveOps
# reads one AMQP connection string from BUS_CONN, like every other backend URL, and the Rust
# AMQP client authenticates with SAS. The rule has Send and Listen only (no Manage), its
# connection string lives only in Key Vault (bus-conn), and in prod the namespace is reachable
# only through its private endpoint. The workload identity also holds the Data Sender and Data
# Receiver roles, so switching to Entra ID is local_auth_enabled = false plus a token-based
# BUS_CONN in the application, with no other infrastructure change.

locals {
  servicebus_topics = ["events.ingested", "events.accepted", "events.flagged"]

  # One subscription per consumer group.
  servicebus_subscriptions = {
    fairness    = "events.ingested"
    progression = "events.accepted"
    leaderboard = "events.accepted"
  }

  # Time-to-live of a message on the topics; expired messages go to the dead-letter queue.
  servicebus_message_ttl = "P7D"
  servicebus_premium     = var.servicebus.sku == "Premium"
  # Partitioning: Standard topics can be partitioned; Premium ones only in a partitioned namespace.
  servicebus_partitioned = local.servicebus_premium ? var.servicebus.premium_messaging_partitions > 1 : true

  # Deliveries of a message before Service Bus dead-letters it (MaxDeliveryCount, ADR 0015).
  servicebus_max_delivery_count = 10
}

resource "azurerm_servicebus_namespace" "this" {
  #checkov:skip=CKV_AZURE_201:Customer-managed keys are not required by the design; messages are encrypted at rest with platform keys.
  #checkov:skip=CKV_AZURE_199:Double (infrastructure) encryption needs customer-managed keys, which the design does not require; messages are encrypted at rest with platform keys.
  #checkov:skip=CKV_AZURE_203:SAS authentication stays on by decision (the note above, README "Service Bus authentication"): LiveOps reads one AMQP connection string; the rule only sends and listens and lives only in Key Vault.
  #checkov:skip=CKV_AZURE_204:Public access is off for Premium (prod), reached through its private endpoint; dev's Standard namespace cannot have private endpoints.
  name                          = "${var.name_prefix}-sb"
  location                      = var.location
  resource_group_name           = azurerm_resource_group.this.name
  sku                           = var.servicebus.sku
  capacity                      = local.servicebus_premium ? var.servicebus.capacity : 0
  premium_messaging_partitions  = local.servicebus_premium ? var.servicebus.premium_messaging_partitions : 0
  local_auth_enabled            = true
  public_network_access_enabled = !local.servicebus_premium
  minimum_tls_version           = "1.2"
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }

  dynamic "network_rule_set" {
    for_each = local.servicebus_premium ? [1] : []
    content {
      default_action                = "Deny"
      public_network_access_enabled = !local.servicebus_premium
      trusted_services_allowed      = true
    }
  }
}

resource "azurerm_servicebus_topic" "this" {
  for_each = toset(local.servicebus_topics)

  name                                    = each.value
  namespace_id                            = azurerm_servicebus_namespace.this.id
  requires_duplicate_detection            = true
  duplicate_detection_history_time_window = "PT10M"
  partitioning_enabled                    = local.servicebus_partitioned
  default_message_ttl                     = local.servicebus_message_ttl
  max_size_in_megabytes                   = local.servicebus_premium ? 81920 : 5120
  batched_operations_enabled              = true
}

resource "azurerm_servicebus_subscription" "this" {
  for_each = local.servicebus_subscriptions

  name                                 = each.key
  topic_id                             = azurerm_servicebus_topic.this[each.value].id
  max_delivery_count                   = local.servicebus_max_delivery_count
  dead_lettering_on_message_expiration = true
  requires_session                     = true
  lock_duration                        = "PT30S"
  default_message_ttl                  = local.servicebus_message_ttl
  batched_operations_enabled           = true
}

# Each subscription takes the topic's messages except the dead-letter replays of another group:
# `liveops dead-letters --replay` sends a group's dead letters back to the topic with the
# application property liveops-replay-group = <group> (crates/adapters/servicebus), and a replay
# reaching another group could be applied there a second time once that group has purged the
# event's id (EVENT_RETENTION). A name with hyphens is quoted in brackets in Service Bus SQL
# filters; EXISTS tells a message without the property from one with it. Azure gives a new
# subscription the catch-all $Default rule and removes it when a rule is created through ARM
# (hashicorp/terraform-provider-azurerm#20718); were it left, the bus still completes a replay for
# another group unread on receive (bus_replays_skipped_total).
resource "azurerm_servicebus_subscription_rule" "replays_of_own_group" {
  for_each = local.servicebus_subscriptions

  name            = "liveops-own-replays"
  subscription_id = azurerm_servicebus_subscription.this[each.key].id
  filter_type     = "SqlFilter"
  sql_filter      = "NOT EXISTS([liveops-replay-group]) OR [liveops-replay-group] = '${each.key}'"
}

# The application's key: send and listen, no manage.
resource "azurerm_servicebus_namespace_authorization_rule" "liveops" {
  name         = "liveops-app"
  namespace_id = azurerm_servicebus_namespace.this.id
  listen       = true
  send         = true
  manage       = false
}

# The workload identity may also send and receive with Entra ID (see the note at the top).
resource "azurerm_role_assignment" "servicebus_workload" {
  for_each = toset(["Azure Service Bus Data Sender", "Azure Service Bus Data Receiver"])

  scope                = azurerm_servicebus_namespace.this.id
  role_definition_name = each.value
  principal_id         = azurerm_user_assigned_identity.this["liveops-workload"].principal_id
  principal_type       = "ServicePrincipal"
}
