# Builds the index the way large tables need it: CONCURRENTLY on PostgreSQL,
# which waits for every open snapshot, so a waiting migrun must hold none.
class AddIndexToUsersEmail < ActiveRecord::Migration[6.1]
  disable_ddl_transaction!

  def change
    if connection.adapter_name =~ /postg/i
      add_index :users, :email, algorithm: :concurrently
    else
      add_index :users, :email
    end
  end
end
