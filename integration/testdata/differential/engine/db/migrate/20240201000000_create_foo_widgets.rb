class CreateFooWidgets < ActiveRecord::Migration[6.1]
  def change
    create_table :foo_widgets do |t|
      t.string :name
    end
  end
end
